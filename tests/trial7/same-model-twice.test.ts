// Fresh-user trial 7: a config naming one checkpoint folder under two model names (a copied line whose
// path was not changed, or a link to the same folder). Found: the store keys models by fingerprint and
// keeps the last name, so the leaderboard showed one model and the other name vanished, with no word.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'a'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 3 })
writeTinyCheckpoint(path.join(dir, 'b'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 4 })
fs.symlinkSync(path.join(dir, 'a'), path.join(dir, 'a-link'))
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

function sweep(name: string, models: Record<string, string>) {
  const config = writeSweepConfig(path.join(dir, `${name}.config.ts`), {
    models, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-agreement'], subset: { limit: 3 }, pool: { workers: 1, threads: 1 }, store: `${name}.sqlite`,
  })
  const r = runCli(['sweep', '--config', config], { env, cwd: dir })
  assert.equal(r.status, 0, r.stderr)
  return r.stderr
}

describe('one checkpoint folder under two model names', () => {
  it('is a warning naming both names and the folder (also through a symbolic link)', () => {
    const stderr = sweep('twice', { first: 'a', second: 'a-link', other: 'b' })
    const warnings = stderr.split('\n').filter(l => l.startsWith('warning: models '))
    assert.deepEqual(warnings, [`warning: models 'first' and 'second' are the same checkpoint folder ${fs.realpathSync(path.join(dir, 'a'))}: they are scored once and are one model in the store and the leaderboard (shown under one of the names); point each at the checkpoint you meant, or drop the extra name from models in the config.`])
  })

  it('distinct checkpoints get no warning', () => {
    assert.doesNotMatch(sweep('distinct', { first: 'a', other: 'b' }), /same checkpoint folder/)
  })
})
