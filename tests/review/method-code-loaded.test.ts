// Review of cae370f (a method's variant key covers the code it runs, its imports included) with
// d1a01e2 (a variant found by id in the home's index is reused by every later store): the code hash was
// read from disk whenever an id was computed, while Node imports a module once per process. A sweep
// plans its variants at the start and prepares them as its cells come up (hours at real size); an edit
// of src/methods/helpers.ts in between gave variants prepared by the old code the new code's id, in the
// store and in the index, and a later sweep running the new code reused them. The id of a planned
// variant must stay that of the code the process loaded.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

// A copy of the project's source (node_modules linked), so the shared tree is never edited.
const dir = tmpDir()
for (const d of ['src', 'methods']) fs.cpSync(path.join(ROOT, d), path.join(dir, d), { recursive: true })
fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'))
fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
const helpers = path.join(dir, 'src/methods/helpers.ts')
const flip = (text: string) => text.replace('scores[li][g * size + i]', '-scores[li][g * size + i]')

/** Plans frequency-pruning 0.5 of the tiny model in a fresh process; `editBetween`: flip the ranking, then compute the id again. */
function ids(editBetween: boolean): { planned: string; later: string } {
  const script = `
    import fs from 'node:fs'
    import { openCheckpoint } from ${JSON.stringify(path.join(dir, 'src/model/checkpoint.ts'))}
    import { planVariant, variantId } from ${JSON.stringify(path.join(dir, 'src/variants/prepare.ts'))}
    const ckpt = openCheckpoint(${JSON.stringify(path.join(ROOT, 'models/tiny-moe'))}, { warn: () => {} })
    const plan = await planVariant(ckpt, 'frequency-pruning', { ratio: 0.5 })
    const planned = variantId(ckpt, plan, 'calibration-key')
    if (${editBetween}) {
      const file = ${JSON.stringify(helpers)}
      fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('scores[li][g * size + i]', '-scores[li][g * size + i]'))
    }
    console.log(JSON.stringify({ planned, later: variantId(ckpt, plan, 'calibration-key') }))`
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: dir, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!)
}

describe('the code hash of a loaded method', () => {
  it('an edit after the method was loaded leaves its variant ids alone in that process, and changes them in the next', () => {
    const original = fs.readFileSync(helpers, 'utf8')
    assert.notEqual(flip(original), original, 'removeLowestPerLayer reads the scores here')
    const first = ids(true)
    assert.equal(first.later, first.planned, 'the running process still runs the code it loaded')
    const next = ids(false) // a new process loads the edited helper
    assert.notEqual(next.planned, first.planned, 'the edited code has variants of its own')
  })
})
