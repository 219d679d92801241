// Attention over blocks of query rows and the head over blocks of scored positions (sequenceChunks.ts,
// moeGraph.ts overQueries / overRows) give the one-pass numbers exactly, for every attention family,
// with blocks that do not divide the sequence, single-row blocks, padding kept or left out, layer
// bodies, and the engine's mapped-weight sessions; half-precision graphs stay one pass.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema, TypeProtoSchema, ValueInfoProtoSchema, type GraphProto } from 'onnx-buf'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { openGraphSession } from '../../src/engine/graphSession.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph, type GraphOptions } from '../../src/onnx/moeGraph.ts'
import { attentionRows, CHUNK_LIMITS, headBlock, headRows, type ChunkLimits } from '../../src/onnx/sequenceChunks.ts'
import { createSession } from '../../src/ort/ort.ts'
import { mulberry32 } from '../../src/util/rng.ts'
import { writeTinyCheckpoint, type TinyFamily } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const rng = mulberry32(11)
const tokens = (n: number) => Array.from({ length: n }, () => 1 + Math.floor(rng() * 300))
// 3 rows x 41 positions (one long row, a multiple-choice request, a short one): 48 scored positions.
const requests: ScoreRequest[] = [
  { prefix: tokens(40), branches: [], scorePrefixFrom: 1 },
  { prefix: tokens(3), branches: [tokens(2), tokens(4)] },
  { prefix: tokens(5), branches: [], scorePrefixFrom: 2 },
]
const batch = packBatch(requests, [0, 1, 2])
const B = 3, T = 41, M = 39 + 6 + 3

/** Limits that block attention into `rows` query rows per pass and the head into `headRowsPerPass` positions, for H heads and vocab V. */
function blocks(H: number, V: number, rows: number, headRowsPerPass: number): ChunkLimits {
  return { attention: rows * B * H * T, head: headRowsPerPass * V }
}

function subgraphOps(g: GraphProto): string[] {
  return g.node.flatMap(n => [n.opType, ...n.attribute.flatMap(a => (a.g ? subgraphOps(a.g) : []))])
}

async function score(ckpt: Checkpoint, edits: VariantEdits, options: GraphOptions) {
  const built = buildScoringGraph(ckpt, edits, options)
  const session = await createSession(built, { device: 'cpu', threads: 1 })
  try {
    const out = await session.run(batchFeeds(batch))
    return { logprobs: Array.from(out.logprobs!.data as Float32Array), greedy: Array.from(out.greedy!.data as Uint8Array, Boolean), ops: subgraphOps(fromBinary(ModelProtoSchema, built.model).graph!) }
  } finally {
    await session.release()
  }
}

const models: [string, () => Checkpoint][] = [
  ...(['mixtral', 'qwen3_moe', 'olmoe', 'qwen2_moe'] as TinyFamily[]).map((family): [string, () => Checkpoint] => [family, () => openCheckpoint(writeTinyCheckpoint(path.join(dir, family), { family, hidden: 32, heads: 4, kvHeads: 2, experts: 6, topK: 2, ffn: 16, layers: 2, vocab: 320, seed: 29 }).dir, { warn: () => {} })]),
  ...(['v2', 'v3'] as const).map((version): [string, () => Checkpoint] => [`deepseek ${version} (MLA)`, () => openCheckpoint(writeTinyDeepseek(path.join(dir, `deepseek-${version}`), { version, seed: 8 }).dir, { warn: () => {} })]),
]

const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)))

describe('long sequences: attention and head in blocks of rows', () => {
  it('the block rule: one pass while B·H·T² fits, else rows that keep a block within the limit', () => {
    assert.equal(attentionRows(1, 16, 2048), 2048) // every default 2048-token batch of OLMoE's 16 heads: one pass
    assert.equal(attentionRows(16, 16, 128), 128)
    assert.equal(attentionRows(1, 32, 2048), 1024) // Mixtral / Qwen3-30B-A3B's 32 heads: two passes
    assert.equal(attentionRows(1, 32, 40960), 51) // Qwen3-30B-A3B's whole context: 2^26 / (32 · 40960)
    assert.equal(attentionRows(1, 1, 1e9), 2) // never fewer than two rows (one row takes another MatMul path)
    assert.equal(attentionRows(1, 1, 1, { ...CHUNK_LIMITS, attention: 0 }), 1)
    assert.equal(headBlock(151936), 441) // Qwen3's vocabulary: 2^26 / 151936
    assert.equal(headRows(2048, 151936), 410) // 5 equal blocks, not 4 x 441 and a fifth padded from 284
    assert.equal(headRows(5, 151936), 5)
    assert.equal(headRows(5, 2 ** 40), 2)
    assert.equal(CHUNK_LIMITS.attention, 2 ** 26)
  })

  for (const [name, open] of models) {
    it(`${name}: blocks of 7, 3 and 2 rows (and 1 asked, 2 taken) score exactly as one pass`, async () => {
      const ckpt = open()
      const { numHeads: H, vocabSize: V } = ckpt.spec
      const edits: VariantEdits = name === 'mixtral' ? { overrides: {}, layers: { 1: { disabled: [1], neuronKeep: 0.5 } } } : emptyEdits()
      const one = await score(ckpt, edits, {})
      assert.equal(one.logprobs.length, M)
      assert.ok(one.logprobs.every(Number.isFinite))
      for (const limits of [blocks(H, V, 7, 5), blocks(H, V, 3, 2), blocks(H, V, 2, 7), blocks(H, V, 1, 1), blocks(H, V, T, M)]) {
        const blocked = await score(ckpt, edits, { chunkLimits: limits })
        assert.equal(maxDiff(blocked.logprobs, one.logprobs), 0, `rows ${limits.attention / (B * H * T)}, head rows ${limits.head / V}`)
        assert.deepEqual(blocked.greedy, one.greedy)
      }
      // The blocked path is a Loop per layer (and one for the head) in an If on the batch's size.
      assert.equal(one.ops.filter(op => op === 'Loop').length, ckpt.spec.layers.length + 1)
    })
  }

  it('padding kept and layer bodies give the same numbers in blocks; half precision stays one pass', async () => {
    const ckpt = models[1]![1]()
    const { numHeads: H, vocabSize: V } = ckpt.spec
    for (const options of [{ keepPadding: true }, { layerBodies: true }]) {
      const one = await score(ckpt, emptyEdits(), options)
      const blocked = await score(ckpt, emptyEdits(), { ...options, chunkLimits: blocks(H, V, 4, 3) })
      assert.equal(maxDiff(blocked.logprobs, one.logprobs), 0, JSON.stringify(options))
      assert.deepEqual(blocked.greedy, one.greedy)
    }
    // A float16 graph is for GPUs: no control flow (unmeasured there), and the CPU's emulation would round at body edges.
    const half = await score(ckpt, emptyEdits(), { precision: 'float16', chunkLimits: blocks(H, V, 4, 3) })
    assert.equal(half.ops.includes('Loop'), false)
    assert.ok(half.logprobs.every(Number.isFinite))
  })

  it('the engine session (mapped weights, layer bodies) scores blocks exactly', async () => {
    const ckpt = models[2]![1]()
    const { numHeads: H, vocabSize: V } = ckpt.spec
    const run = async (options: GraphOptions) => {
      const session = await openGraphSession(ckpt, emptyEdits(), options, { device: 'cpu', threads: 1, cacheDir: path.join(dir, 'home') })
      try {
        return Array.from((await session.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array)
      } finally {
        await session.release()
      }
    }
    const one = await run({})
    assert.equal(maxDiff(await run({ chunkLimits: blocks(H, V, 6, 4) }), one), 0)
  })

  it('the blocked branch is the one taken under small limits, and the one-pass branch under the defaults', async () => {
    const ckpt = models[2]![1]()
    const { numHeads: H, vocabSize: V } = ckpt.spec
    const takesBlocks = async (options: GraphOptions) => {
      const built = buildScoringGraph(ckpt, emptyEdits(), options)
      // Expose the condition of the first attention If as an extra output.
      const model = fromBinary(ModelProtoSchema, built.model)
      const graph = model.graph!
      const attentionIf = (g: GraphProto): string | undefined => {
        for (const n of g.node) {
          if (n.opType === 'If' && n.attribute.some(a => a.g?.name.startsWith('attention_blocked'))) return n.input[0]
        }
        return undefined
      }
      const cond = attentionIf(graph)!
      assert.ok(cond, 'an attention If in the main graph')
      graph.output.push(create(ValueInfoProtoSchema, { name: cond, type: create(TypeProtoSchema, { value: { case: 'tensorType', value: { elemType: 9, shape: { dim: [] } } } }) }))
      const session = await createSession({ ...built, model: toBinary(ModelProtoSchema, model) }, { device: 'cpu', threads: 1 })
      try {
        return Boolean((await session.run(batchFeeds(batch), [cond]))[cond]!.data[0])
      } finally {
        await session.release()
      }
    }
    assert.equal(await takesBlocks({ chunkLimits: blocks(H, V, 6, 4) }), true)
    assert.equal(await takesBlocks({}), false)
  })
})
