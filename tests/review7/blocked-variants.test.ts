// Attention in blocks of query rows and the head in blocks of scored positions give every output of
// every graph the engine builds bit for bit as one pass: calibration outputs (padding kept), the
// sequential procedure's slices (hidden_in, peekMlp), expert masks as inputs, weights as inputs, and
// the edge cases of the head Loop (one scored position, none at all, a one-token row).
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { packBatch, type PackedBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph, expertMaskFeeds, weightInputFeeds, type GraphOptions } from '../../src/onnx/moeGraph.ts'
import type { ChunkLimits } from '../../src/onnx/sequenceChunks.ts'
import { createSession } from '../../src/ort/ort.ts'
import { mulberry32 } from '../../src/util/rng.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const rng = mulberry32(21)
const tokens = (n: number) => Array.from({ length: n }, () => 1 + Math.floor(rng() * 300))
const requests: ScoreRequest[] = [
  { prefix: tokens(30), branches: [], scorePrefixFrom: 1 },
  { prefix: tokens(4), branches: [tokens(3), tokens(5)] },
  { prefix: tokens(6), branches: [], scorePrefixFrom: 2 },
]
const batch = packBatch(requests, [0, 1, 2])
/** Blocks of 3 query rows (of the batch's B x T) and 2 scored positions. */
const small = (ckpt: Checkpoint, b: PackedBatch): ChunkLimits => ({ attention: 3 * b.rows * ckpt.spec.numHeads * b.width, head: 2 * ckpt.spec.vocabSize })

type Feeds = Record<string, { type?: 'float32' | 'int64'; data: Float32Array | BigInt64Array; dims: number[] }>

async function outputs(ckpt: Checkpoint, edits: VariantEdits, options: GraphOptions, feeds: Feeds): Promise<Record<string, number[]>> {
  const built = buildScoringGraph(ckpt, edits, options)
  const session = await createSession(built, { device: 'cpu', threads: 1 })
  try {
    const typed = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, { type: v.type ?? (v.data instanceof Float32Array ? 'float32' : 'int64'), data: v.data, dims: v.dims }]))
    const out = await session.run(typed as never, built.outputNames)
    return Object.fromEntries(built.outputNames.map(n => [n, Array.from(out[n]!.data as ArrayLike<number | bigint | boolean>, Number)]))
  } finally {
    await session.release()
  }
}

async function sameInBlocks(ckpt: Checkpoint, edits: VariantEdits, options: GraphOptions, feeds: Feeds, b = batch): Promise<Record<string, number[]>> {
  const one = await outputs(ckpt, edits, options, feeds)
  const blocked = await outputs(ckpt, edits, { ...options, chunkLimits: small(ckpt, b) }, feeds)
  assert.deepEqual(Object.keys(blocked).sort(), Object.keys(one).sort())
  for (const name of Object.keys(one)) {
    assert.ok(one[name]!.every(v => !Number.isNaN(v)), `${name}: no NaN`)
    assert.deepEqual(blocked[name], one[name], `${name} in blocks`)
  }
  return one
}

const qwen = () => openCheckpoint(writeTinyCheckpoint(path.join(dir, 'qwen'), { family: 'qwen3_moe', hidden: 32, heads: 4, kvHeads: 2, experts: 6, topK: 2, ffn: 16, layers: 2, vocab: 320, seed: 5 }).dir, { warn: () => {} })
const deepseek = () => openCheckpoint(writeTinyDeepseek(path.join(dir, 'deepseek'), { version: 'v3', seed: 6 }).dir, { warn: () => {} })
const allCalibration = { routerLogits: true, moeInputs: true, moeOutputs: true, expertOutputs: true, expertOutputsAllTokens: true, expertHidden: true }

describe('blocks of rows in every graph variant the engine builds', () => {
  it('calibration outputs of a whole pass (padding kept), Qwen3 and DeepSeek-V3 (MLA, q_lora, a dense layer)', async () => {
    for (const ckpt of [qwen(), deepseek()]) {
      const out = await sameInBlocks(ckpt, emptyEdits(), { calibration: allCalibration }, batchFeeds(batch))
      assert.ok(Object.keys(out).some(n => n.startsWith('router_logits_')))
    }
  })

  it('the sequential procedure\'s slices: from the embedding with peekMlp, and from hidden_in', async () => {
    const ckpt = qwen()
    const feeds = batchFeeds(batch)
    const first = await sameInBlocks(ckpt, emptyEdits(), { calibration: allCalibration, slice: { from: 0, to: 1, peekMlp: true } }, feeds)
    const hidden = Float32Array.from(first.hidden_out!)
    await sameInBlocks(ckpt, emptyEdits(), { calibration: allCalibration, slice: { from: 1, to: 3, peekMlp: true } }, { ...feeds, hidden_in: { data: hidden, dims: [batch.rows * batch.width, ckpt.spec.hiddenSize] } })
    await sameInBlocks(ckpt, emptyEdits(), { slice: { from: 1, to: 4 } }, { ...feeds, hidden_in: { data: hidden, dims: [batch.rows * batch.width, ckpt.spec.hiddenSize] } })
  })

  it('expert masks and weights as inputs (shared sessions)', async () => {
    const ckpt = qwen()
    const masked: VariantEdits = { overrides: {}, layers: { 0: { disabled: [2] }, 1: { disabled: [0, 4] } } }
    const masks = Object.fromEntries(Object.entries(expertMaskFeeds(ckpt.spec, masked)).map(([k, v]) => [k, { data: v, dims: [v.length] }]))
    await sameInBlocks(ckpt, emptyEdits(), { maskInputs: true }, { ...batchFeeds(batch), ...masks })
    const names = ['model.layers.1.mlp.experts.3.down_proj.weight', 'model.layers.0.self_attn.o_proj.weight']
    await sameInBlocks(ckpt, emptyEdits(), { weightInputs: names }, { ...batchFeeds(batch), ...weightInputFeeds(ckpt, emptyEdits(), names) })
  })

  it('one scored position, none, and a batch of one-token rows', async () => {
    const ckpt = deepseek()
    const one = packBatch([{ prefix: tokens(12), branches: [], scorePrefixFrom: 11 }], [0])
    assert.equal(one.scorePositions.length, 1)
    assert.equal((await sameInBlocks(ckpt, emptyEdits(), {}, batchFeeds(one), one)).logprobs!.length, 1)
    const none = packBatch([{ prefix: tokens(12), branches: [], scorePrefixFrom: 12 }], [0])
    assert.equal(none.scorePositions.length, 0)
    assert.deepEqual((await sameInBlocks(ckpt, emptyEdits(), {}, batchFeeds(none), none)).logprobs, [])
    const short = packBatch([{ prefix: tokens(2), branches: [], scorePrefixFrom: 1 }, { prefix: tokens(2), branches: [], scorePrefixFrom: 1 }], [0, 1])
    assert.equal(short.width, 1)
    assert.equal((await sameInBlocks(ckpt, emptyEdits(), {}, batchFeeds(short), short)).logprobs!.length, 2)
  })
})
