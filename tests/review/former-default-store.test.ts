// Review of f5dad51 (no `store` means results.sqlite in the harness home; a config's `store` is relative
// to the config): a user whose results were in the former default, ./.harness/results.sqlite of the
// current folder, and who sets MOE_HARNESS_HOME, got a new empty store in the home and every cell
// re-scored, with nothing said. The sweep must name the former store and how to keep using it.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const body = {
  models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'],
  subset: { limit: 2 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
}
fs.writeFileSync(path.join(dir, 'harness.config.ts'), `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify(body)})\n`)

describe('results in the former default store', () => {
  it('a sweep that no longer uses ./.harness/results.sqlite says so, naming both stores', () => {
    const former = path.join(dir, '.harness', 'results.sqlite')
    // Written as before the change: no home set, the default store of the current folder.
    const first = runCli(['sweep', '--json'], { cwd: dir, env: { MOE_HARNESS_HOME: '' } })
    assert.equal(first.status, 0, first.stderr)
    assert.ok(fs.existsSync(former))
    assert.doesNotMatch(first.stderr, /former|no longer/i, 'the store in use is the former one: nothing to say')

    const home = path.join(dir, 'home')
    const r = runCli(['sweep', '--json'], { cwd: dir, env: { MOE_HARNESS_HOME: home } })
    assert.equal(r.status, 0, r.stderr)
    assert.equal(lastJson(r.stdout).completed, 1, 'the new store re-scored the cell')
    const warning = r.stderr.split('\n').find(l => l.includes(former))
    assert.ok(warning, `the former store is named:\n${r.stderr}`)
    assert.ok(warning.includes(path.join(home, 'results.sqlite')), warning)
    assert.match(warning, /--db|store:/, 'says how to keep using it')

    // An explicit --db is the user's choice: nothing to say.
    const explicit = runCli(['sweep', '--json', '--db', path.join(dir, 'mine.sqlite')], { cwd: dir, env: { MOE_HARNESS_HOME: home } })
    assert.equal(explicit.status, 0, explicit.stderr)
    assert.ok(!explicit.stderr.includes(former), explicit.stderr)
  })
})
