// Variants that only remove experts share one session per checkpoint (moeGraph.ts maskInputs,
// poolWorker.ts planFor): fed their masks, it scores exactly as each variant's own graph does, and a
// second variant in a worker costs no session build.
import assert from 'node:assert/strict'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { publishVariantFolder } from '../../src/edits/variantFolder.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph, expertMaskFeeds, isMaskOnly } from '../../src/onnx/moeGraph.ts'
import { createSession, type Feed } from '../../src/ort/ort.ts'
import { createPool, type ScoringPool } from '../../src/pool/pool.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const requests: ScoreRequest[] = [
  { prefix: [1, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33], branches: [[5, 6, 7], [8]], scorePrefixFrom: 1 },
  { prefix: [9, 10, 11, 12, 13, 200], branches: [[14, 15]], scorePrefixFrom: 1 },
]
const batch = packBatch(requests, [0, 1])
const removal = (layers: Record<number, number[]>): VariantEdits => ({
  layers: Object.fromEntries(Object.entries(layers).map(([l, disabled]) => [l, { disabled }])),
  overrides: {},
})

async function ownScores(ckpt: Checkpoint, edits: VariantEdits): Promise<Float32Array> {
  const session = await createSession(buildScoringGraph(ckpt, edits), { device: 'cpu', threads: 2 })
  try {
    return (await session.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array
  } finally {
    await session.release()
  }
}

const models: [string, () => Checkpoint, VariantEdits[]][] = [
  ['Qwen3-MoE (softmax top-k)', () => {
    const d = path.join(dir, 'qwen3')
    writeTinyCheckpoint(d, { family: 'qwen3_moe', dtype: 'BF16', hidden: 32, heads: 4, kvHeads: 2, experts: 20, topK: 4, ffn: 12, layers: 2, seed: 3 })
    return openCheckpoint(d, { warn: () => {} })
  }, [emptyEdits(), removal({ 0: [0, 5, 19] }), removal({ 0: [1, 2, 3, 4, 6, 7, 8, 9], 1: [10, 11] })]],
  ['DeepSeek-V3 (sigmoid, noaux_tc groups)', () => {
    const d = path.join(dir, 'dsv3')
    writeTinyDeepseek(d, { version: 'v3', experts: 8, topK: 2, nGroup: 4, topkGroup: 2, topkMethod: 'noaux_tc', layers: 2, firstKDenseReplace: 0, seed: 5 })
    return openCheckpoint(d, { warn: () => {} })
  }, [emptyEdits(), removal({ 0: [0, 2, 4, 6] }), removal({ 1: [7] })]],
]

describe('variants that only remove experts share one session', () => {
  for (const [name, open, variants] of models) {
    it(`${name}: the shared session fed each variant's masks scores bit for bit as the variant's own graph`, async () => {
      const ckpt = open()
      const shared = await createSession(buildScoringGraph(ckpt, emptyEdits(), { maskInputs: true }), { device: 'cpu', threads: 2 })
      try {
        for (const edits of variants) {
          assert.ok(isMaskOnly(edits))
          const masks: Record<string, Feed> = {}
          for (const [k, data] of Object.entries(expertMaskFeeds(ckpt.spec, edits))) masks[k] = { type: 'float32', data, dims: [data.length] }
          const got = (await shared.run({ ...batchFeeds(batch), ...masks }, ['logprobs'])).logprobs.data as Float32Array
          const want = await ownScores(ckpt, edits)
          assert.deepEqual(Array.from(got), Array.from(want), JSON.stringify(edits.layers))
        }
      } finally {
        await shared.release()
      }
    })
  }

  it('a graph with mask inputs refuses edits that disable experts themselves', () => {
    const ckpt = openCheckpoint(path.join(dir, 'qwen3'), { warn: () => {} })
    assert.throws(() => buildScoringGraph(ckpt, removal({ 0: [1] }), { maskInputs: true }), /expert_mask_0/)
  })

  it('isMaskOnly: overrides and other hooks need their own session', () => {
    assert.equal(isMaskOnly({ layers: { 0: { disabled: [1], topK: 1 } }, overrides: {} }), false)
    assert.equal(isMaskOnly({ layers: {}, overrides: { w: new Float32Array(1) } }), false)
    assert.equal(isMaskOnly({ layers: { 0: { disabled: [] } }, overrides: {} }), true)
  })

  describe('in a pool worker', () => {
    let pool: ScoringPool
    before(() => { pool = createPool({ workers: 1, threads: 1, device: 'cpu' }) })
    after(() => pool.close())

    it('a second pruned variant of the same checkpoint builds no session and scores as its own graph', async () => {
      const ckpt = openCheckpoint(path.join(dir, 'qwen3'), { warn: () => {} })
      const variant = (name: string, edits: VariantEdits) => {
        const d = path.join(dir, 'variants', name)
        publishVariantFolder(d, ckpt.dir, edits, () => 'BF16')
        return d
      }
      const a = removal({ 0: [0, 5, 19] }), b = removal({ 1: [3, 4, 5] })
      const first = await pool.runner(variant('a', a))(batch)
      const builtAfterFirst = pool.buildSeconds()
      assert.ok(builtAfterFirst > 0)
      const second = await pool.runner(variant('b', b))(batch)
      assert.equal(pool.buildSeconds(), builtAfterFirst, 'the second variant reused the shared session')
      // Workers run 1 thread here; the variants' own graphs at 1 thread are the reference.
      for (const [got, edits] of [[first, a], [second, b]] as const) {
        const own = await createSession(buildScoringGraph(ckpt, edits), { device: 'cpu', threads: 1 })
        const want = (await own.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array
        await own.release()
        assert.deepEqual(Array.from(got.logprobs), Array.from(want))
      }
    })
  })
})
