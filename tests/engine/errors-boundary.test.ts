// Errors keep their structure: a HarnessError raised in a pool worker arrives in the main thread with
// its code, message and context; a failed sweep cell stores them; the ORT seam refuses bad feeds by
// name and shape, and restates onnxruntime's own failures with the node and the feeds.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { formatError, HarnessError, type HarnessErrorData } from '../../src/errors.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph } from '../../src/onnx/moeGraph.ts'
import { createSession, type Feed, type Session } from '../../src/ort/ort.ts'
import { createPool, type ScoringPool } from '../../src/pool/pool.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { publishVariantFolder } from '../../src/edits/variantFolder.ts'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const tiny = { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, vocab: 320 } as const
const good = writeTinyCheckpoint(path.join(dir, 'good'), { ...tiny, seed: 71 })
const broken = writeTinyCheckpoint(path.join(dir, 'nan'), { ...tiny, seed: 72 })
const NAN_TENSOR = 'model.layers.1.block_sparse_moe.experts.2.w2.weight'
{
  // Three NaNs in one expert's down projection: the checkpoint's non-finite check names the tensor.
  const file = path.join(broken.dir, 'model.safetensors')
  const buf = fs.readFileSync(file)
  const len = Number(buf.readBigUInt64LE(0))
  const header = JSON.parse(buf.subarray(8, 8 + len).toString())
  for (let i = 0; i < 3; i++) buf.writeFloatLE(NaN, 8 + len + header[NAN_TENSOR].data_offsets[0] + 4 * i)
  fs.writeFileSync(file, buf)
}

const variant = (name: string, modelDir: string, edits: VariantEdits = emptyEdits()) => {
  const d = path.join(dir, 'variants', name)
  publishVariantFolder(d, modelDir, edits, () => 'F32')
  return d
}
const batchOf = (...requests: ScoreRequest[]) => packBatch(requests, requests.map((_, i) => i))

/** The rejection of `p`, which must be a HarnessError (rebuilt in this thread, not a worker's plain Error). */
async function rejection(p: Promise<unknown>): Promise<HarnessError> {
  try {
    await p
  } catch (e) {
    assert.ok(e instanceof HarnessError, `expected a HarnessError, got ${(e as Error)?.stack ?? String(e)}`)
    return e
  }
  assert.fail('expected a rejection')
}

describe('worker errors cross the pool boundary with their code and fields', () => {
  let pool: ScoringPool
  before(() => { pool = createPool({ workers: 1, threads: 1, device: 'cpu' }) })
  after(() => pool.close())
  const request: ScoreRequest = { prefix: [5, 17, 42], branches: [[7, 9], [11]] }

  it('non-finite weights: TENSOR_NONFINITE naming the tensor, at session build', async () => {
    const e = await rejection(pool.runner(variant('nan', broken.dir))(batchOf(request)))
    assert.equal(e.code, 'TENSOR_NONFINITE')
    assert.equal(e.phase, 'session build')
    assert.match(e.message, new RegExp(`${NAN_TENSOR.replaceAll('.', '\\.')}' holds 3 NaN`))
  })

  it('a token id outside the vocabulary: TOKEN_OUT_OF_RANGE naming the id and where it is, at batch run', async () => {
    const e = await rejection(pool.runner(variant('good', good.dir))(batchOf(request, { prefix: [5, 320 + 79, 3], branches: [[4]] })))
    assert.equal(e.code, 'TOKEN_OUT_OF_RANGE')
    assert.equal(e.phase, 'batch run')
    assert.match(e.message, /Token id 399 \(input_ids\[\d+\]\) is outside the model's vocabulary 0\.\.319/)
  })

  it('an invalid hook in the variant folder: HOOK_INVALID naming the layer and expert', async () => {
    const edits: VariantEdits = { layers: { 1: { disabled: [6] } }, overrides: {} }
    const e = await rejection(pool.runner(variant('bad-hook', good.dir, edits))(batchOf(request)))
    assert.equal(e.code, 'HOOK_INVALID')
    assert.equal(e.phase, 'session build')
    assert.match(e.message, /expert 6 is out of range 0\.\.3/)
  })

  it('the worker still scores after those failures', async () => {
    const out = await pool.runner(variant('good', good.dir))(batchOf(request))
    assert.equal(out.logprobs.length, 2 + 1, 'one log-probability per scored token')
    assert.ok(out.logprobs.every(v => Number.isFinite(v) && v < 0), String(out.logprobs))
  })
})

describe('HarnessError as data', () => {
  it('round-trips through structured clone with every field, and formats as one line', () => {
    const e = new HarnessError('NUMERIC_FAILURE', 'non-finite log-likelihood for document 3', { method: 'naee', phase: 'score', task: 'arc_easy', cause: new Error('inner') })
    const data: HarnessErrorData = structuredClone(e.toData())
    assert.deepEqual(data, { code: 'NUMERIC_FAILURE', message: 'non-finite log-likelihood for document 3', method: 'naee', phase: 'score', task: 'arc_easy' })
    const back = HarnessError.fromData(data)
    assert.ok(back instanceof HarnessError)
    assert.deepEqual([back.code, back.message, back.method, back.phase, back.task], ['NUMERIC_FAILURE', data.message, 'naee', 'score', 'arc_easy'])
    assert.equal(formatError(data), 'NUMERIC_FAILURE (method naee, phase score, task arc_easy): non-finite log-likelihood for document 3')
    assert.equal(formatError({ code: 'TASK_INVALID', message: 'm' }), 'TASK_INVALID: m', 'no context, no parentheses (the old format)')
  })
})

describe('the CLI and sweeps report the fields', () => {
  const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

  it('the CLI prints error [CODE] (method, phase): message', () => {
    // 4 experts with top-2 routing cannot lose 90% of them: refused by the method's validate step.
    const r = runCli(['eval', '--model', good.dir, '--tasks', 'brown-cloze', '--method', 'reap', '--ratio', '0.9'], { env })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /^error \[METHOD_INFEASIBLE\] \(method reap, phase validate\): (?!\[method)\S/m)
  })

  it('a failed sweep cell stores and reports its code, method, phase and task', () => {
    const config = path.join(dir, 'nan.config.ts')
    const body = {
      models: { n: broken.dir }, methods: ['neuron-top-k'], ratios: [0.5], tasks: ['brown-cloze'], subset: { sample: 4 },
      calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
      // Scored anyway: without it a sweep refuses the model's weights before any cell (sweep/modelChecks.ts).
      allowNonfinite: true,
    }
    writeSweepConfig(config, body)
    const db = path.join(dir, 'nan.sqlite')
    const r = runCli(['sweep', '--config', config, '--db', db, '--json'], { env })
    assert.equal(r.status, 1, r.stderr)
    const expected = { code: 'NUMERIC_FAILURE', method: 'neuron-top-k', phase: 'score', task: 'brown-cloze' }
    const summary = lastJson(r.stdout)
    assert.equal(summary.failures.length, 1)
    const f = summary.failures[0]
    assert.deepEqual({ code: f.code, method: f.method, phase: f.phase, task: f.task }, expected)
    assert.match(f.message, /non-finite/)
    assert.equal(f.error, formatError(f))
    assert.match(r.stderr, /\n {2}n neuron-top-k \{"ratio":0\.5\} brown-cloze: NUMERIC_FAILURE \(method neuron-top-k, phase score, task brown-cloze\): .*non-finite/)
    const s = new ResultsStore(db, { readonly: true })
    try {
      const rows = s.all<{ error: string; error_json: string }>("SELECT error, error_json FROM runs WHERE status = 'failed'")
      assert.equal(rows.length, 1)
      const stored = JSON.parse(rows[0]!.error_json)
      assert.deepEqual({ code: stored.code, method: stored.method, phase: stored.phase, task: stored.task }, expected)
      assert.equal(rows[0]!.error, formatError(stored))
    } finally {
      s.close()
    }
  })
})

describe('the ORT seam checks feeds and restates onnxruntime failures', () => {
  let session: Session
  const ckpt = openCheckpoint(good.dir)
  before(async () => { session = await createSession(buildScoringGraph(ckpt, emptyEdits()), { device: 'cpu', threads: 1 }) })
  after(() => session.release())
  // One row of 4 positions (prefix 3 + branch 2, the last token only a target), 2 scored tokens.
  const feeds = (): Record<string, Feed> => batchFeeds(batchOf({ prefix: [5, 17, 42], branches: [[7, 9]] }))
  const refused = async (f: Record<string, Feed>, pattern: RegExp) => {
    const e = await rejection(session.run(f, ['logprobs']))
    assert.equal(e.code, 'FEED_INVALID', e.message)
    assert.match(e.message, pattern)
  }

  it('declares the inputs with their types and symbolic shapes', () => {
    const ids = session.inputs.find(i => i.name === 'input_ids')!
    assert.deepEqual({ type: ids.type, rank: ids.shape.length }, { type: 'int64', rank: 2 })
  })

  it('a well-formed feed runs', async () => {
    const out = await session.run(feeds(), ['logprobs'])
    assert.equal(out.logprobs!.data.length, 2)
  })

  it('refuses a missing input, an unknown one, a wrong type, a wrong rank and disagreeing dimensions', async () => {
    const { branch_ids: _, ...missing } = feeds()
    await refused(missing, /Input 'branch_ids' was not fed \(fed: input_ids int64\[1, 4\], position_ids int64\[1, 4\], score_positions int64\[2\], score_targets int64\[2\]\)/)
    const f = feeds()
    await refused({ ...f, input_idz: f.input_ids! }, /Feed 'input_idz' is not an input of this graph \(did you mean input_ids\?\)/)
    await refused({ ...f, input_ids: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } }, /Input 'input_ids' must be int64, got input_ids float32\[1, 4\]/)
    await refused({ ...f, position_ids: { ...f.position_ids!, dims: [4] } }, /Input 'position_ids' must have rank 2 \[B, T\], got position_ids int64\[4\]/)
    await refused({ ...f, position_ids: { type: 'int64', data: new BigInt64Array(8), dims: [2, 4] } }, /Dimension 'B' is 1 in 'input_ids' but 2 in 'position_ids'/)
    await refused({ ...f, score_targets: { type: 'int64', data: new BigInt64Array(3), dims: [2] } }, /Input 'score_targets': 3 values do not fill dims \[2\]/)
  })

  it('an onnxruntime failure names the node and the feed shapes', async () => {
    // The seam does not know what a token is: an id past the embedding reaches onnxruntime's Gather.
    const f = feeds()
    f.input_ids!.data[1] = 5000n
    const e = await rejection(session.run(f, ['logprobs']))
    assert.equal(e.code, 'SESSION_FAILED')
    assert.match(e.message, /^onnxruntime node '[^']+' \(Gather\) failed: indices element out of data bounds, idx=5000/)
    assert.match(e.message, /Feeds: input_ids int64\[1, 4\], position_ids int64\[1, 4\], branch_ids int64\[1, 4\], score_positions int64\[2\], score_targets int64\[2\]\./)
  })
})
