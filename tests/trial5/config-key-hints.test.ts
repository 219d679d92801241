// Fresh-user trial 5: a misspelt key of harness.config.ts is named with the key it probably meant.
// Found: `ratio: [0, 0.5]` (for ratios) said only `(root): Unrecognized key: "ratio"`, and a misspelt
// key inside subset / pool / a method entry the same, without the valid spelling. An empty tasks or
// methods list swept nothing, with exit 0.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const base = { models: { tiny: path.join(import.meta.dirname, '../../models/tiny-moe') }, tasks: ['brown-cloze'], store: 'results.sqlite' }

describe('config key typos', () => {
  const cases: [name: string, body: Record<string, unknown>, message: RegExp][] = [
    ['root', { ...base, ratio: [0, 0.5] }, /\(root\): Unrecognized key: "ratio" \(did you mean ratios\?\)/],
    ['nested', { ...base, subset: { smaple: 10 } }, /subset: Unrecognized key: "smaple" \(did you mean sample\?\)/],
    ['method entry', { ...base, methods: ['reap', { method: 'reap', parms: { ratio: 0.5 } }] }, /methods\.1: Unrecognized key: "parms" \(did you mean params\?\)/],
    ['no close key', { ...base, zzzzzz: 1 }, /\(root\): Unrecognized key: "zzzzzz"\.$/m],
    // An empty list swept nothing and exited 0 ("0 cells scored"); leaving the key out means every method / the built-in tasks.
    ['empty tasks', { ...base, tasks: [] }, /tasks: list at least one task, or leave tasks out for the built-in tasks/],
    ['empty methods', { ...base, methods: [] }, /methods: list at least one method, or leave methods out for every method in methods\//],
  ]
  for (const [name, body, message] of cases) {
    it(`${name}: HARNESS_CONFIG_INVALID naming the file and the closest key, nothing written`, () => {
      const sub = path.join(dir, name.replaceAll(' ', '-'))
      fs.mkdirSync(sub)
      const file = writeSweepConfig(path.join(sub, 'harness.config.ts'), body)
      const r = runCli(['sweep', '--config', file], { cwd: sub, env: { MOE_HARNESS_HOME: path.join(sub, 'home') } })
      assert.equal(r.status, 1, r.stderr)
      assert.match(r.stderr, new RegExp(`error \\[HARNESS_CONFIG_INVALID\\]: ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is invalid: `))
      assert.match(r.stderr, message)
      assert.deepEqual(fs.readdirSync(sub), ['harness.config.ts'], 'no store, no home')
    })
  }
})
