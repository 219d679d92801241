// A scoring graph runs its token-wise nodes on the batch's real tokens only (moeGraph.ts Padding): with
// rows of very different lengths, most of a [B, T] batch is padding, and the scores equal those of the
// graph that computes every position (GraphOptions.keepPadding), for every attention family.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fromBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema } from 'onnx-buf'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph, type GraphOptions } from '../../src/onnx/moeGraph.ts'
import { createSession } from '../../src/ort/ort.ts'
import { mulberry32 } from '../../src/util/rng.ts'
import { writeTinyCheckpoint, type TinyFamily } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const rng = mulberry32(5)
const tokens = (n: number) => Array.from({ length: n }, () => 1 + Math.floor(rng() * 300))
// One 40-token row and short ones: 4 x 41 positions, 59 of them real.
const requests: ScoreRequest[] = [
  { prefix: tokens(40), branches: [], scorePrefixFrom: 1 },
  { prefix: tokens(3), branches: [tokens(2), tokens(4)] },
  { prefix: tokens(5), branches: [], scorePrefixFrom: 2 },
  { prefix: [7], branches: [[9]] },
]

async function score(ckpt: Checkpoint, edits: VariantEdits, options: GraphOptions) {
  const built = buildScoringGraph(ckpt, edits, options)
  const session = await createSession(built, { device: 'cpu', threads: 1 })
  try {
    const batch = packBatch(requests, [0, 1, 2, 3])
    const out = await session.run(batchFeeds(batch))
    return { logprobs: Array.from(out.logprobs!.data as Float32Array), greedy: Array.from(out.greedy!.data as Uint8Array, Boolean), ops: fromBinary(ModelProtoSchema, built.model).graph!.node.map(n => n.opType) }
  } finally {
    await session.release()
  }
}

const models: [string, () => Checkpoint][] = [
  ...(['mixtral', 'qwen3_moe', 'olmoe', 'qwen2_moe'] as TinyFamily[]).map((family): [string, () => Checkpoint] => [family, () => openCheckpoint(writeTinyCheckpoint(path.join(dir, family), { family, hidden: 32, heads: 4, kvHeads: 2, experts: 6, topK: 2, ffn: 16, layers: 2, vocab: 320, seed: 23 }).dir, { warn: () => {} })]),
  ...(['v2', 'v3'] as const).map((version): [string, () => Checkpoint] => [`deepseek ${version} (MLA)`, () => openCheckpoint(writeTinyDeepseek(path.join(dir, `deepseek-${version}`), { version, seed: 4 }).dir, { warn: () => {} })]),
]

describe('padding left out of the token-wise nodes', () => {
  for (const [name, open] of models) {
    it(`${name}: scores a mostly padded batch as the graph that computes every position`, async () => {
      const ckpt = open()
      const edits: VariantEdits = name === 'mixtral' ? { overrides: {}, layers: { 1: { disabled: [1], neuronKeep: 0.5 } } } : emptyEdits()
      const dropped = await score(ckpt, edits, {})
      const kept = await score(ckpt, edits, { keepPadding: true })
      assert.equal(dropped.logprobs.length, 39 + 6 + 3 + 1)
      const diff = Math.max(...dropped.logprobs.map((v, i) => Math.abs(v - kept.logprobs[i]!)))
      assert.ok(diff < 2e-6, `max |Δ logprob| ${diff}`)
      assert.ok(dropped.logprobs.every(Number.isFinite))
      assert.deepEqual(dropped.greedy, kept.greedy)
      // Only the graph that leaves padding out maps positions to real tokens (a running count of them).
      assert.deepEqual([dropped.ops.includes('CumSum'), kept.ops.includes('CumSum')], [true, false])
    })
  }

  it('calibration outputs keep one row per position (their consumers index rows as b*T + t)', () => {
    const ckpt = models[0]![1]()
    const built = buildScoringGraph(ckpt, emptyEdits(), { calibration: { routerLogits: true } })
    assert.ok(!fromBinary(ModelProtoSchema, built.model).graph!.node.some(n => n.opType === 'CumSum'))
  })
})
