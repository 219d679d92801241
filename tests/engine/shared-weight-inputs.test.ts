// Variants that change only a small set of weights share one session per (checkpoint, edited tensors),
// with those tensors as float32 inputs (moeGraph.ts sharedWeightInputs / weightInputFeeds, poolWorker.ts
// planFor): fed a variant's tensors, it scores bit for bit as the variant's own graph (edited tensors
// mapped from its folder), and a second ratio in a worker costs no session build.
import assert from 'node:assert/strict'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { publishVariantFolder, readVariantFiles } from '../../src/edits/variantFolder.ts'
import { openGraphSession } from '../../src/engine/graphSession.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { sharedWeightInputs, weightInputFeeds, weightInputName } from '../../src/onnx/moeGraph.ts'
import type { Feed } from '../../src/ort/ort.ts'
import { createPool, type ScoringPool } from '../../src/pool/pool.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const requests: ScoreRequest[] = [
  { prefix: [1, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33], branches: [[5, 6, 7], [8]], scorePrefixFrom: 1 },
  { prefix: [9, 10, 11, 12, 13, 200], branches: [[14, 15]], scorePrefixFrom: 1 },
]
const batch = packBatch(requests, [0, 1])

/** Magnitude pruning of every expert matrix of the model: the `ratio` smallest |w| of each matrix zeroed (exact in any dtype). */
function magnitude(ckpt: Checkpoint, ratio: number): VariantEdits {
  const edits = emptyEdits()
  for (const layer of ckpt.names.layers) {
    for (const e of layer.experts ?? []) {
      for (const n of [e.gate, e.up, e.down]) {
        const w = ckpt.read(n)
        const cut = Float32Array.from(w, Math.abs).sort()[Math.floor(ratio * w.length)]!
        edits.overrides[n] = w.map(v => (Math.abs(v) < cut ? 0 : v))
      }
    }
  }
  return edits
}

function model(name: string, dtype: 'BF16' | 'F16' | 'F32', family: 'qwen3_moe' | 'olmoe'): Checkpoint {
  const d = path.join(dir, name)
  writeTinyCheckpoint(d, { family, dtype, hidden: 32, heads: 4, kvHeads: 2, experts: 8, topK: 2, ffn: 12, layers: 2, seed: 11 })
  return openCheckpoint(d, { warn: () => {} })
}

const settings = { device: 'cpu' as const, threads: 1, cacheDir: path.join(dir, 'home') }

async function scores(ckpt: Checkpoint, edits: VariantEdits, options: { weightInputs?: string[] }, feeds: Record<string, Feed> = {}): Promise<number[]> {
  const session = await openGraphSession(ckpt, edits, options, settings)
  try {
    return Array.from((await session.run({ ...batchFeeds(batch), ...feeds }, ['logprobs'])).logprobs.data as Float32Array)
  } finally {
    await session.release()
  }
}

describe('variants that change the same few weights share one session', () => {
  for (const [label, dtype, family] of [['Qwen3-MoE BF16', 'BF16', 'qwen3_moe'], ['OLMoE F16', 'F16', 'olmoe']] as const) {
    it(`${label}: the shared session fed each ratio's tensors scores bit for bit as the variant's own graph`, async () => {
      const ckpt = model(`${family}-${dtype}`, dtype, family)
      const base = await scores(ckpt, emptyEdits(), {})
      const variants = [0.25, 0.5, 0.75].map(r => {
        // Stored as a sweep stores it: the published folder's overrides are what both paths read.
        const folder = path.join(dir, 'published', `${family}-${dtype}-${r}`)
        publishVariantFolder(folder, ckpt.dir, magnitude(ckpt, r), () => dtype)
        return readVariantFiles(folder).edits
      })
      const names = sharedWeightInputs(ckpt, variants[0]!, 'float32')
      assert.ok(names && names.length === 2 * 8 * 3, `every expert matrix is an input (${names?.length})`)
      for (const edits of variants) {
        assert.deepEqual(sharedWeightInputs(ckpt, edits, 'float32'), names, 'every ratio edits the same tensors')
        const feeds: Record<string, Feed> = {}
        for (const [k, f] of Object.entries(weightInputFeeds(ckpt, edits, names))) feeds[k] = { type: 'float32', ...f }
        const shared = await scores(ckpt, emptyEdits(), { weightInputs: names }, feeds)
        const own = await scores(ckpt, edits, {})
        assert.deepEqual(shared, own)
        assert.notDeepEqual(own, base, 'the edits change the scores')
      }
      // Fed the checkpoint's own tensors, the shared session is the unedited model.
      const unedited: Record<string, Feed> = {}
      for (const [k, f] of Object.entries(weightInputFeeds(ckpt, emptyEdits(), names))) unedited[k] = { type: 'float32', ...f }
      assert.deepEqual(await scores(ckpt, emptyEdits(), { weightInputs: names }, unedited), base)
    })
  }

  it('sharedWeightInputs: hooks, half precision and other models need their own session', () => {
    const ckpt = openCheckpoint(path.join(dir, 'qwen3_moe-BF16'), { warn: () => {} })
    const edits = magnitude(ckpt, 0.5)
    assert.equal(sharedWeightInputs(ckpt, emptyEdits(), 'float32'), undefined, 'nothing edited: the masks session')
    assert.equal(sharedWeightInputs(ckpt, { ...edits, layers: { 0: { disabled: [1] } } }, 'float32'), undefined)
    assert.equal(sharedWeightInputs(ckpt, { ...edits, layers: { 1: { bindings: { 2: 3 } } } }, 'float32'), undefined)
    assert.equal(sharedWeightInputs(ckpt, edits, 'float16'), undefined)
    // float32 weights are constants onnxruntime may pre-pack in their own graph: not shared.
    const f32 = model('qwen3_moe-F32', 'F32', 'qwen3_moe')
    assert.equal(sharedWeightInputs(f32, magnitude(f32, 0.5), 'float32'), undefined)
    assert.deepEqual(sharedWeightInputs(ckpt, { ...edits, layers: { 0: {} } }, 'float32'), Object.keys(edits.overrides).sort(), 'empty hooks are no hooks')
    assert.equal(weightInputName('model.layers.0.mlp.experts.1.up_proj.weight'), 'weight_input:model.layers.0.mlp.experts.1.up_proj.weight')
  })

  it('weightInputFeeds refuses a tensor of the wrong size (VARIANT_INVALID)', () => {
    const ckpt = openCheckpoint(path.join(dir, 'qwen3_moe-BF16'), { warn: () => {} })
    const name = ckpt.names.layers[0]!.experts![0]!.up
    assert.throws(() => weightInputFeeds(ckpt, { layers: {}, overrides: { [name]: new Float32Array(3) } }, [name]), (e: Error & { code?: string }) => e.code === 'VARIANT_INVALID' && /prepare it again/.test(e.message))
  })

  describe('in a pool worker', () => {
    let pool: ScoringPool
    before(() => { pool = createPool({ workers: 1, threads: 1, device: 'cpu' }) })
    after(() => pool.close())

    it('a second ratio of magnitude pruning builds no session and scores as its own graph', async () => {
      const ckpt = openCheckpoint(path.join(dir, 'qwen3_moe-BF16'), { warn: () => {} })
      const folder = (r: number) => path.join(dir, 'published', `qwen3_moe-BF16-${r}`) // published by the first test
      const first = await pool.runner(folder(0.25))(batch)
      const builtAfterFirst = pool.buildSeconds()
      assert.ok(builtAfterFirst > 0)
      const second = await pool.runner(folder(0.5))(batch)
      assert.equal(pool.buildSeconds(), builtAfterFirst, 'the second ratio reused the shared session')
      const again = await pool.runner(folder(0.25))(batch)
      assert.deepEqual(Array.from(again.logprobs), Array.from(first.logprobs), 'switching back feeds the first ratio again')
      for (const [got, r] of [[first, 0.25], [second, 0.5]] as const) {
        assert.deepEqual(Array.from(got.logprobs), await scores(ckpt, readVariantFiles(folder(r)).edits, {}))
      }
    })
  })
})
