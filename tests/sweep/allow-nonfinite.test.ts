// sweep/start on a checkpoint with NaN weights: refused naming --allow-nonfinite, and that flag (or the
// config key allowNonfinite) reaches the main thread and the pool's workers, so the sweep then scores it.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { poisonTensors } from '../helpers/rawSafetensors.ts'

const dir = tmpDir()
const ckpt = writeTinyCheckpoint(path.join(dir, 'nan-model'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 81 })
const EMBED = 'model.embed_tokens.weight'
{
  // NaNs in the embedding row of the last token id, which no task text tokenizes to: the tensor is
  // refused on read, yet with the option every score stays finite (only that row is non-finite).
  const file = path.join(ckpt.dir, 'model.safetensors')
  const buf = fs.readFileSync(file)
  const len = Number(buf.readBigUInt64LE(0))
  const header = JSON.parse(buf.subarray(8, 8 + len).toString())
  const [vocab, hidden] = header[EMBED].shape as [number, number]
  const row = 8 + len + header[EMBED].data_offsets[0] + 4 * hidden * (vocab - 1)
  for (let i = 0; i < 3; i++) buf.writeFloatLE(NaN, row + 4 * i)
  fs.writeFileSync(file, buf)
}
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

function config(name: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(dir, `${name}.config.ts`)
  const body = { models: { nanny: 'nan-model' }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 3 }, pool: { workers: 1, threads: 1 }, ...extra }
  writeSweepConfig(file, body)
  return file
}
const runsIn = (db: string) => {
  const s = new ResultsStore(db, { readonly: true })
  try { return s.all('SELECT status FROM runs') as { status: string }[] } finally { s.close() }
}

describe('sweep --allow-nonfinite', () => {
  it('a model whose every output is NaN fails its cells (perplexity too) with NUMERIC_FAILURE; the other model is scored', () => {
    const broken = writeTinyCheckpoint(path.join(dir, 'all-nan'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 82 })
    poisonTensors(path.join(broken.dir, 'model.safetensors'), ['model.norm.weight']) // the final norm: every logit NaN
    const db = path.join(dir, 'all-nan.sqlite')
    const r = runCli(['sweep', '--config', config('all-nan', { models: { broken: 'all-nan', nanny: 'nan-model' }, tasks: ['brown-perplexity', 'brown-cloze'] }), '--db', db, '--allow-nonfinite'], { env })
    assert.doesNotMatch(r.stderr, /STORE_FAILED/)
    const s = new ResultsStore(db, { readonly: true })
    const rows = s.all<{ model: string; task: string; status: string; error: string | null }>('SELECT m.name AS model, r.task, r.status, r.error FROM runs r JOIN models m ON m.model_id = r.model_id ORDER BY m.name, r.task')
    s.close()
    assert.deepEqual(rows.map(x => [x.model, x.task, x.status]), [
      ['broken', 'brown-cloze', 'failed'], ['broken', 'brown-perplexity', 'failed'], ['nanny', 'brown-cloze', 'complete'], ['nanny', 'brown-perplexity', 'complete'],
    ])
    assert.ok(rows.filter(x => x.model === 'broken').every(x => /NUMERIC_FAILURE/.test(x.error ?? '')), JSON.stringify(rows))
  })

  it('without it the sweep fails, naming the tensor and an option sweep accepts', () => {
    const r = runCli(['sweep', '--config', config('plain'), '--db', path.join(dir, 'plain.sqlite')], { env })
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /TENSOR_NONFINITE/)
    assert.match(r.stderr, /model\.embed_tokens\.weight' holds 3 NaN/)
    assert.match(r.stderr, /--allow-nonfinite/)
    assert.match(r.stderr, /allowNonfinite/)
  })

  it('the flag is accepted by sweep and reaches the workers: the cell is scored', () => {
    const db = path.join(dir, 'flag.sqlite')
    const r = runCli(['sweep', '--config', config('flag'), '--db', db, '--allow-nonfinite'], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(runsIn(db).map(x => x.status), ['complete'])
  })

  it('the config key, globally or per model, does the same; an unknown model name is refused', () => {
    for (const [name, value] of [['global', true], ['listed', ['nanny']]] as const) {
      const db = path.join(dir, `${name}.sqlite`)
      const r = runCli(['sweep', '--config', config(name, { allowNonfinite: value }), '--db', db], { env })
      assert.equal(r.status, 0, `${name}: ${r.stderr}`)
      assert.deepEqual(runsIn(db).map(x => x.status), ['complete'])
    }
    const bad = runCli(['sweep', '--config', config('typo', { allowNonfinite: ['nany'] }), '--db', path.join(dir, 'typo.sqlite')], { env })
    assert.notEqual(bad.status, 0)
    assert.match(bad.stderr, /HARNESS_CONFIG_INVALID.*allowNonfinite names 'nany', not a key of models \(nanny\)/)
  })
})
