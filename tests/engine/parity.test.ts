// The ONNX path against the independent float64 reference, for every family and dtype, with
// expert masks and neuron top-k, on checkpoints of assorted shapes.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import type { DType } from '../../src/model/safetensors.ts'
import { writeTinyCheckpoint, type TinyOptions } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { referenceLogprobs, type RefHooks } from '../reference/forward.ts'

const dir = tmpDir()
const SEQS = [
  [0, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33],
  [5, 6, 7, 8, 9, 10, 11, 12, 13],
]

interface Case { name: string; options: TinyOptions }

const shapes: Omit<TinyOptions, 'family' | 'dtype'>[] = [
  { hidden: 32, heads: 4, kvHeads: 2, experts: 4, topK: 2, ffn: 24, layers: 2, seed: 11 },
  { hidden: 48, heads: 6, kvHeads: 3, experts: 5, topK: 1, ffn: 20, layers: 3, seed: 12, tie: true },
  { hidden: 40, heads: 4, kvHeads: 1, experts: 8, topK: 3, ffn: 16, layers: 2, seed: 13, shards: 3 },
  { hidden: 32, heads: 2, kvHeads: 2, experts: 6, topK: 2, ffn: 28, layers: 2, seed: 14, headDim: 24 },
]
const dtypes: DType[] = ['F32', 'F16', 'BF16']
const families = ['mixtral', 'olmoe', 'qwen2_moe', 'qwen3_moe'] as const

const cases: Case[] = []
families.forEach((family, fi) => dtypes.forEach((dtype, di) => {
  const shape = shapes[(fi + di) % shapes.length]
  const extra: Partial<TinyOptions> =
    family === 'olmoe' ? { clipQkv: di === 1 ? 0.6 : null, normTopK: di === 2 }
      : family === 'qwen2_moe' ? { mlpOnlyLayers: di === 0 ? [1] : [], decoderSparseStep: di === 2 ? 2 : 1, normTopK: di === 1 }
        : family === 'qwen3_moe' ? { ropeTheta: 1e6 } : {}
  cases.push({ name: `${family} ${dtype} h${shape.hidden} E${shape.experts} k${shape.topK}`, options: { family, dtype, ...shape, ...extra } })
}))

function hookVariants(opts: TinyOptions): { name: string; ref: RefHooks; edits: VariantEdits }[] {
  const E = opts.experts ?? 4, k = opts.topK ?? 2
  const removable = Math.min(2, E - k)
  const masked = Array.from({ length: removable }, (_, i) => (i * 3 + 1) % E).filter((v, i, a) => a.indexOf(v) === i)
  const layers = opts.layers ?? 2
  const moeLayer = opts.family === 'qwen2_moe' && (opts.decoderSparseStep ?? 1) === 2 ? 1 : opts.mlpOnlyLayers?.includes(0) ? 1 : 0
  const mask = { name: `mask ${moeLayer}:${masked}`, ref: { disabled: { [moeLayer]: masked } }, edits: { ...emptyEdits(), layers: { [moeLayer]: { disabled: masked } } } }
  const neuron: { name: string; ref: RefHooks; edits: VariantEdits } = { name: 'neuron top-k 0.4', ref: { neuronKeep: {} }, edits: emptyEdits() }
  for (let l = 0; l < layers; l++) {
    const sparse = opts.family === 'mixtral' || opts.family === 'olmoe' || (!(opts.mlpOnlyLayers ?? []).includes(l) && (l + 1) % (opts.decoderSparseStep ?? 1) === 0)
    if (!sparse) continue
    neuron.ref.neuronKeep![l] = 0.4
    neuron.edits.layers[l] = { neuronKeep: 0.4 }
  }
  const both = {
    name: 'mask + neuron top-k',
    ref: { ...neuron.ref, disabled: mask.ref.disabled },
    edits: { overrides: {}, layers: Object.fromEntries(Object.entries(neuron.edits.layers).map(([l, h]) => [l, { ...h, ...(Number(l) === moeLayer ? { disabled: masked } : {}) }])) },
  }
  return [{ name: 'plain', ref: {}, edits: emptyEdits() }, ...(masked.length ? [mask] : []), neuron, both]
}

describe('ONNX log-probs match the float64 reference within 1e-4', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const model = writeTinyCheckpoint(path.join(dir, c.name.replace(/\W+/g, '_')), c.options)
      const ckpt = openCheckpoint(model.dir)
      for (const variant of hookVariants(c.options)) {
        const scorer = await createLocalScorer(ckpt, variant.edits, { device: 'cpu', threads: 1 })
        try {
          const results = await scorer.score(SEQS.map(s => ({ prefix: s, branches: [], scorePrefixFrom: 1 })))
          SEQS.forEach((seq, si) => {
            const ref = referenceLogprobs(model.config, model.tensors, seq, variant.ref)
            assert.equal(results[si].prefix.length, seq.length - 1)
            const worst = Math.max(...results[si].prefix.map((v, i) => Math.abs(v - ref[i])))
            assert.ok(worst < 1e-4, `${variant.name}, sequence ${si}: max |diff| ${worst}`)
          })
        } finally {
          await scorer.release()
        }
      }
    })
  }

  it('weight overrides are used, and the log-softmax stays exact with huge logits', async () => {
    const model = writeTinyCheckpoint(path.join(dir, 'huge'), { family: 'qwen3_moe', seed: 6 })
    const ckpt = openCheckpoint(model.dir)
    const head = model.tensors.get('lm_head.weight')!
    const scaled = head.data.map(v => v * 400)
    const scorer = await createLocalScorer(ckpt, { layers: {}, overrides: { 'lm_head.weight': scaled } }, { device: 'cpu', threads: 1 })
    const [res] = await scorer.score([{ prefix: SEQS[1], branches: [], scorePrefixFrom: 1 }])
    const tensors = new Map(model.tensors)
    tensors.set('lm_head.weight', { shape: head.shape, data: scaled })
    const ref = referenceLogprobs(model.config, tensors, SEQS[1])
    assert.ok(res.prefix.every(Number.isFinite))
    assert.ok(Math.min(...ref) < -100, 'logits are large enough to overflow a naive exp')
    const worst = Math.max(...res.prefix.map((v, i) => Math.abs(v - ref[i]) / Math.max(1, Math.abs(ref[i]))))
    assert.ok(worst < 1e-5, `relative diff ${worst}`)
    await scorer.release()
  })

  it('hooks change the scores (the comparison is not vacuous)', async () => {
    const model = writeTinyCheckpoint(path.join(dir, 'vacuous'), { family: 'mixtral', experts: 6, topK: 2, seed: 5 })
    const ckpt = openCheckpoint(model.dir)
    const plain = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: 1 })
    const masked = await createLocalScorer(ckpt, { overrides: {}, layers: { 0: { disabled: [0, 1, 2] }, 1: { neuronKeep: 0.3 } } }, { device: 'cpu', threads: 1 })
    const req = [{ prefix: SEQS[0], branches: [], scorePrefixFrom: 1 }]
    const [a] = await plain.score(req)
    const [b] = await masked.score(req)
    const diff = Math.max(...a.prefix.map((v, i) => Math.abs(v - b.prefix[i])))
    assert.ok(diff > 1e-3, `hooks should change log-probs, max diff ${diff}`)
    await plain.release()
    await masked.release()
  })
})
