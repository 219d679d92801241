// A model whose calibration fails (here: its windows cannot be built, its default calibration length,
// its max_position_embeddings, asks for more tokens than the source holds) fails the variants that
// need calibration, and only those: its calibration-free variants and every other model are scored as
// in a sweep without it. A model with a broken tokenizer is refused up front, before any calibration.
// When the failure leaves nothing to score, the sweep stops as a whole naming the model.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { cellScores } from '../helpers/storeScores.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
/** A tiny model whose context is `positions` tokens (the default calibration length is min(2048, that)). */
function model(name: string, seed: number, positions: number): void {
  writeTinyCheckpoint(path.join(dir, name), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed })
  const file = path.join(dir, name, 'config.json')
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), max_position_embeddings: positions }))
}
model('short', 95, 64) // 2 windows × 64 tokens: the source suffices
model('long', 96, 512) // 2 windows × 512 tokens: it does not
model('untokenizable', 97, 64)
fs.writeFileSync(path.join(dir, 'untokenizable', 'tokenizer.json'), '{"model": ')
// A few hundred tokens of text, documents separated by blank lines.
fs.writeFileSync(path.join(dir, 'calibration.txt'), Array.from({ length: 6 }, (_, i) => `Document ${i} says that the quick brown fox jumps over the lazy dog, then rests a while by the river bank.`).join('\n\n') + '\n')
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

function config(name: string, models: Record<string, string>, methods: string[] = ['frequency-pruning', 'magnitude-pruning']): string {
  const file = path.join(dir, `${name}.config.ts`)
  const body = {
    models, methods, ratios: [0.5], tasks: ['brown-cloze'], subset: { limit: 3 },
    calibration: { source: path.join(dir, 'calibration.txt'), sequences: 2 }, pool: { workers: 1, threads: 1 },
  }
  writeSweepConfig(file, body)
  return file
}
const db = (name: string) => path.join(dir, `${name}.sqlite`)
const sweep = (cfg: string, store: string) => runCli(['sweep', '--config', cfg, '--db', db(store), '--json'], { env })

const scores = (store: string) => cellScores(db(store), c => `${c.model} ${c.method} ${c.task}`)

describe('sweep with a model whose calibration fails', () => {
  it('fails only the variants that need the calibration; everything else is scored as without that model', () => {
    const alone = sweep(config('alone', { short: 'short' }), 'alone')
    assert.equal(alone.status, 0, alone.stderr)
    const r = sweep(config('mixed', { long: 'long', short: 'short' }), 'mixed')
    assert.equal(r.status, 1, r.stderr)
    const summary = lastJson(r.stdout)
    assert.equal(summary.failed, 1, r.stderr)
    const [f] = summary.failures
    assert.equal(f.cell, 'long frequency-pruning {"ratio":0.5} brown-cloze')
    assert.equal(f.code, 'CALIBRATION_FAILED')
    assert.equal(f.phase, 'calibrate')
    assert.match(f.message, /^model 'long': The calibration source has \d+ tokens but 2 × 512 = 1024 are needed/)
    assert.match(r.stderr, /calibration for long failed: CALIBRATION_FAILED/)
    const all = scores('mixed')
    assert.deepEqual(Object.keys(all), ['long magnitude-pruning brown-cloze', 'short frequency-pruning brown-cloze', 'short magnitude-pruning brown-cloze'])
    const own = scores('alone')
    assert.equal(Object.keys(own).length, 2)
    for (const [k, v] of Object.entries(own)) assert.deepEqual(all[k], v, k)
    const s = new ResultsStore(db('mixed'), { readonly: true })
    const failed = s.all<{ method: string; error_json: string }>(`SELECT method, error_json FROM variants WHERE status = 'failed'`)
    s.close()
    assert.deepEqual(failed.map(v => [v.method, JSON.parse(v.error_json).code]), [['frequency-pruning', 'CALIBRATION_FAILED']])
  })

  it('a broken tokenizer is refused before any calibration and fails all of that model\'s cells', () => {
    const r = sweep(config('tok', { untokenizable: 'untokenizable', short: 'short' }), 'tok')
    assert.equal(r.status, 1, r.stderr)
    const summary = lastJson(r.stdout)
    assert.deepEqual(summary.failures.map((f: any) => [f.cell.split(' ')[0], f.code, f.phase]), [
      ['untokenizable', 'TOKENIZER_INVALID', 'check'], ['untokenizable', 'TOKENIZER_INVALID', 'check'],
    ])
    assert.match(summary.failures[0].message, /^model 'untokenizable': .*tokenizer\.json/)
    assert.doesNotMatch(r.stderr, /calibration for untokenizable/)
    assert.deepEqual(Object.keys(scores('tok')), ['short frequency-pruning brown-cloze', 'short magnitude-pruning brown-cloze'])
  })

  it('a sweep left with nothing to score stops as a whole, naming the model', () => {
    const r = sweep(config('only', { long: 'long' }, ['frequency-pruning']), 'only')
    assert.equal(r.status, 1)
    assert.match(r.stderr, /error \[CALIBRATION_FAILED\] \(phase calibrate\): model 'long': The calibration source has \d+ tokens/)
  })
})
