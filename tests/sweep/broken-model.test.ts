// One broken model among several fails only its own cells: `good` is scored exactly as a sweep of it
// alone, `bad` (one NaN in lm_head.weight) is refused up front, before any calibration, its cells stored
// as failed variants with TENSOR_NONFINITE naming its file and tensor, the summary names it and the
// sweep exits 1; once `bad` is fixed a rerun scores only its cells. A sweep whose only model is broken
// still stops as a whole, naming the model and the fix.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { poisonTensors, readRaw, tensorBytes, writeRaw } from '../helpers/rawSafetensors.ts'
import { writeTinyCheckpoint, type TinyOptions } from '../helpers/tinyCheckpoint.ts'
import { cellScores } from '../helpers/storeScores.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const tiny = (seed: number, dtype: TinyOptions['dtype'] = 'F32'): TinyOptions => ({ family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed, dtype })
writeTinyCheckpoint(path.join(dir, 'good'), tiny(91))
const badFile = path.join(dir, 'bad', 'model.safetensors')
const writeBad = () => writeTinyCheckpoint(path.join(dir, 'bad'), tiny(92, 'BF16'))
/** One NaN (2 bytes of BF16: sign 0, exponent all ones, mantissa 0x40) at the start of lm_head.weight. */
function poisonBad(): void {
  const raw = readRaw(badFile)
  tensorBytes(raw, 'lm_head.weight').writeUInt16LE(0x7fc0, 0)
  writeRaw(badFile, raw.headerText, raw.data)
}
writeBad()
poisonBad()
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

function config(name: string, models: Record<string, string>): string {
  const file = path.join(dir, `${name}.config.ts`)
  const body = {
    models, methods: ['frequency-pruning', 'magnitude-pruning'], ratios: [0, 0.5], tasks: ['brown-cloze'],
    subset: { limit: 4 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
  }
  writeSweepConfig(file, body)
  return file
}
const db = (name: string) => path.join(dir, `${name}.sqlite`)
const sweep = (cfg: string, store: string) => runCli(['sweep', '--config', cfg, '--db', db(store), '--json'], { env })

const scores = (store: string) => cellScores(db(store), c => `${c.model} ${c.method} ${c.ratio} ${c.task}`)

function failedVariants(store: string): { model: string; method: string; ratio: number; error: string; error_json: string }[] {
  const s = new ResultsStore(db(store), { readonly: true })
  try {
    return s.all(`SELECT m.name AS model, v.method, v.ratio, v.error, v.error_json FROM variants v JOIN models m ON m.model_id = v.model_id
      WHERE v.status = 'failed' ORDER BY 1, 2, 3`)
  } finally {
    s.close()
  }
}

describe('sweep with one broken model', () => {
  const alone = sweep(config('alone', { good: 'good' }), 'alone')
  const both = sweep(config('both', { good: 'good', bad: 'bad' }), 'both')

  it('scores the good model as a sweep of it alone', () => {
    assert.equal(alone.status, 0, alone.stderr)
    const own = scores('alone')
    assert.equal(Object.keys(own).length, 4, JSON.stringify(own)) // 2 methods × 2 ratios × 1 task
    assert.deepEqual(scores('both'), own)
  })

  it("fails the broken model's cells only, with TENSOR_NONFINITE naming its file and tensor, and exits 1", () => {
    assert.equal(both.status, 1, both.stderr)
    const summary = lastJson(both.stdout)
    assert.equal(summary.failed, 4)
    assert.equal(summary.completed + summary.skipped, 4)
    assert.deepEqual(summary.failures.map((f: any) => f.cell.split(' ')[0]), ['bad', 'bad', 'bad', 'bad'])
    for (const f of summary.failures) {
      assert.equal(f.code, 'TENSOR_NONFINITE')
      assert.ok(f.message.includes(badFile) && f.message.includes("tensor 'lm_head.weight' holds 1 NaN"), f.message)
      assert.match(f.message, /model 'bad'/)
    }
    // The summary printed to the user names the model and the fix.
    assert.match(both.stderr, /4 cell\(s\) failed:\n {2}bad frequency-pruning/)
    assert.match(both.stderr, /--allow-nonfinite/)
    // Found before any calibration: the good model's calibration is logged after the refusal, the bad one's never.
    const refused = both.stderr.indexOf('TENSOR_NONFINITE')
    assert.ok(refused >= 0 && refused < both.stderr.indexOf('calibration for good'), both.stderr)
    assert.doesNotMatch(both.stderr, /calibration for bad/)
    const stored = failedVariants('both')
    assert.deepEqual(stored.map(v => [v.model, v.method, v.ratio]), [
      ['bad', 'frequency-pruning', 0], ['bad', 'frequency-pruning', 0.5], ['bad', 'magnitude-pruning', 0], ['bad', 'magnitude-pruning', 0.5],
    ])
    for (const v of stored) {
      assert.equal(JSON.parse(v.error_json).code, 'TENSOR_NONFINITE')
      assert.match(v.error, /^TENSOR_NONFINITE .*lm_head\.weight/)
    }
  })

  it('the report lists the failed cells under the broken model', () => {
    const r = runCli(['report', '--db', db('both'), '--out', path.join(dir, 'site')], { env })
    assert.equal(r.status, 0, r.stderr)
    const html = fs.readdirSync(path.join(dir, 'site'), { recursive: true }).map(f => path.join(dir, 'site', String(f)))
      .filter(f => f.endsWith('.html')).map(f => fs.readFileSync(f, 'utf8')).join('\n')
    assert.match(html, /TENSOR_NONFINITE/)
  })

  it('a rerun after fixing the model scores only its cells', () => {
    writeBad()
    const r = sweep(config('both', { good: 'good', bad: 'bad' }), 'both')
    assert.equal(r.status, 0, r.stderr)
    const summary = lastJson(r.stdout)
    assert.equal(summary.failed, 0)
    assert.equal(summary.cells, 8)
    // The good model's 4 cells are kept; the bad model's ratio-0 cells are one unpruned model (scored once, found stored once).
    assert.equal(summary.completed, 3, r.stderr)
    assert.equal(summary.skipped, 5, r.stderr)
    const all = scores('both')
    assert.equal(Object.keys(all).filter(k => k.startsWith('bad ')).length, 4, JSON.stringify(all))
    assert.deepEqual(Object.fromEntries(Object.entries(all).filter(([k]) => k.startsWith('good '))), scores('alone'))
  })

  it('a model that cannot be opened stops the sweep before any work, as a config error, naming the model', () => {
    const r = sweep(config('missing', { good: 'good', typo: 'goood' }), 'missing')
    assert.equal(r.status, 1)
    assert.match(r.stderr, /error \[CHECKPOINT_NOT_FOUND\]: model 'typo': .*goood/)
    assert.doesNotMatch(r.stderr, /calibration for/)
  })

  it('a sweep whose only model is broken stops as a whole, naming the model, its tensor and the fix', () => {
    poisonTensors(path.join(dir, 'good', 'model.safetensors'), ['model.norm.weight'])
    const r = sweep(config('only', { good: 'good' }), 'only')
    assert.equal(r.status, 1)
    assert.match(r.stderr, /error \[TENSOR_NONFINITE\]/)
    assert.match(r.stderr, /model 'good'/)
    assert.match(r.stderr, /model\.norm\.weight' holds 1 NaN/)
    assert.match(r.stderr, /--allow-nonfinite/)
    assert.doesNotMatch(r.stderr, /calibration for good/)
  })
})
