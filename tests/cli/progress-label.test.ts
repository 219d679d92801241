// A progress bar's line names its label after a separator only when there is one: a bar without a
// label printed an empty "|  |" segment (HF7). Runs the real bar in a child (stderr is not a terminal,
// so cli-progress prints plain lines) and reads what it printed.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

function barLines(script: string): string[] {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `import { createProgress } from './src/cli/progress.ts'\n${script}`], { cwd: ROOT, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return r.stderr.split('\n').filter(l => l.startsWith('Scoring'))
}

describe('progress bar line', () => {
  it('has no empty label segment when no label is given', () => {
    const lines = barLines(`const p = createProgress('Scoring', 4, { unit: 'requests' }); p.update(2); p.update(4); p.stop()`)
    assert.ok(lines.length > 0)
    const last = lines.at(-1)!
    assert.match(last, /^Scoring \S+ 4\/4 requests \| eta /)
    assert.doesNotMatch(last, /\|\s*\|/)
  })

  it('shows the label between the count and the eta', () => {
    const lines = barLines(`const p = createProgress('Scoring', 4, { unit: 'requests' }); p.update(3, 'arc_easy'); p.update(4, 'arc_easy'); p.stop()`)
    assert.match(lines.at(-1)!, /^Scoring \S+ 4\/4 requests \| arc_easy \| eta /)
  })

  it('drops a label that is cleared to the empty string', () => {
    const lines = barLines(`const p = createProgress('Scoring', 4); p.update(2, 'arc_easy'); p.update(4, ''); p.stop()`)
    assert.match(lines.at(-1)!, /^Scoring \S+ 4\/4 \| eta /)
  })
})
