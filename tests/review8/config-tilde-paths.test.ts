// Review 8: a TypeScript config's paths are plain strings, never expanded by a shell: `store:
// '~/results.sqlite'` made a folder named '~' in the config's folder (whose cleanup, `rm -rf ~`,
// deletes the user's home), and `models: { olmoe: '~/models/OLMoE-1B-7B' }` was "Model folder
// <config folder>/~/models/... does not exist". Such a path is now refused before any work, naming the
// field and the absolute path meant.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 4 })
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const base = { models: { m: 'model' }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-agreement'], subset: { limit: 1 } }

describe("a config path beginning with '~'", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['store', { store: '~/r8-results.sqlite' }, 'store'],
    ['report.outDir', { report: { outDir: '~/r8-site' } }, 'report.outDir'],
    ['a model folder', { models: { m: '~/models/OLMoE-1B-7B' } }, 'models.m'],
    ['dataDir', { dataDir: '~/datasets' }, 'dataDir'],
    ['a calibration file', { calibration: { source: '~/calib.txt' } }, 'calibration.source'],
  ]
  for (const [name, fields, field] of cases) {
    it(`${name}: refused naming the field and the home-based path, nothing written`, () => {
      const config = writeSweepConfig(path.join(dir, 'c.config.ts'), { ...base, ...fields })
      const r = runCli(['sweep', '--config', config], { env, cwd: dir })
      assert.equal(r.status, 1, r.stderr)
      const value = JSON.stringify(Object.values(fields)[0]).match(/"(~[^"]*)"/)![1]!
      assert.equal(r.stderr.trim(), `error [HARNESS_CONFIG_INVALID]: ${config} is invalid: ${field} is ${JSON.stringify(value)}, but a config's paths are not expanded by a shell, so it would be a folder named '~' in ${dir}; write the path out (${path.join(os.homedir(), value.slice(1))}, or os.homedir() in the config).`)
      assert.equal(fs.existsSync(path.join(dir, '~')), false)
    })
  }
})
