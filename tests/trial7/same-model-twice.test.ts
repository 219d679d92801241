// Fresh-user trial 7: a config naming one checkpoint folder under two model names (a copied line whose
// path was not changed, or a link to the same folder). Found: the store keys models by fingerprint and
// keeps the last name, so the leaderboard showed one model and the other name vanished, with no word.
// The converse: two checkpoints recorded under one name in one store (two configs reusing a name, a
// checkpoint replaced at the same path) were two leaderboard sections and pages titled alike.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { reportSite } from '../helpers/site.ts'
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

describe('two checkpoints under one model name in one store', () => {
  it('are told apart by their fingerprint on the leaderboard; their scores stay their own', () => {
    sweep('shared', { mine: 'a' })
    fs.renameSync(path.join(dir, 'shared.sqlite'), path.join(dir, 'kept.sqlite'))
    const store = path.join(dir, 'kept.sqlite')
    for (const folder of ['a', 'b']) {
      const config = writeSweepConfig(path.join(dir, `one-name-${folder}.config.ts`), {
        models: { mine: folder }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-agreement'], subset: { limit: 3 }, pool: { workers: 1, threads: 1 }, store: 'one-name.sqlite',
      })
      const r = runCli(['sweep', '--config', config], { env, cwd: dir })
      assert.equal(r.status, 0, r.stderr)
    }
    const { data, files } = reportSite(path.join(dir, 'one-name.sqlite'), path.join(dir, 'one-name-site'))
    const names = data.models.map(m => m.name)
    assert.deepEqual(names, data.models.map(m => `mine [${m.id.slice(0, 8)}]`))
    assert.equal(new Set(names).size, 2)
    assert.deepEqual(data.models.map(m => files.has(`model-${m.slug}.html`)), [true, true])
    // A store with the name once keeps it as it is.
    assert.deepEqual(reportSite(store, path.join(dir, 'kept-site')).data.models.map(m => m.name), ['mine'])
  })
})
