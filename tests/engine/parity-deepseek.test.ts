// The ONNX path against the independent float64 reference (tests/reference/deepseek.ts) on tiny
// DeepSeek-V2 / DeepSeek-V3 checkpoints of assorted shapes: q_lora_rank null and set, greedy /
// group_limited_greedy / noaux_tc routing, YaRN and plain rope, both V3 rope layouts, shared experts,
// first dense layers, moe_layer_freq > 1, F32 / F16 / BF16 / FP8 (128x128 blocks), with masked
// experts (equal and unequal per group) and neuron top-k, v4 and v5 files (rope_parameters, fused
// experts); plus YaRN on the four existing families in both config forms.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek, type TinyDeepseekOptions, type YarnScaling } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { referenceLogprobs, type RefHooks } from '../reference/forward.ts'

const dir = tmpDir()
const SEQS = [
  [0, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33, 140, 141, 9],
  [5, 6, 7, 8, 9, 10, 11, 12, 13],
]
const TOL = 1e-4

// DeepSeek-V2-Lite's and DeepSeek-V3's rope_scaling, scaled down (factor = max_position / original, as
// on the Hub, so every transformers generation derives the same factor).
const yarnV2: YarnScaling = { type: 'yarn', factor: 4, original_max_position_embeddings: 512, beta_fast: 32, beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707 }
const yarnV3: YarnScaling = { type: 'yarn', factor: 8, original_max_position_embeddings: 256, beta_fast: 32, beta_slow: 1, mscale: 1.0, mscale_all_dim: 1.0 }

interface Case {
  name: string
  options: TinyDeepseekOptions
  /** Expert masks to try, each on the first MoE layer. */
  masks: number[][]
  /** Where transformers and the Hub code disagree the engine may refuse instead, naming the key. */
  mayRefuse?: RegExp
}

const cases: Case[] = [
  { name: 'v2 F32 q_proj greedy shared×2 first-dense 1', masks: [[1, 6]],
    options: { version: 'v2', dtype: 'F32', seed: 21, layers: 3, qLoraRank: null, topkMethod: 'greedy', experts: 8, topK: 2, nSharedExperts: 2, firstKDenseReplace: 1 } },
  // top-k above topk_group: only then does group_limited_greedy differ from greedy.
  { name: 'v2 BF16 q_lora group_limited_greedy YaRN, v5 files (rope_parameters, fused experts)', masks: [[0, 7], [4]],
    options: { version: 'v2', dtype: 'BF16', seed: 22, configForm: 'v5', fusedExperts: true, layers: 2, qLoraRank: 16, topkMethod: 'group_limited_greedy', experts: 12, nGroup: 4, topkGroup: 2, topK: 3,
      nSharedExperts: 1, firstKDenseReplace: 1, ropeScaling: yarnV2, maxPositionEmbeddings: 2048, routedScalingFactor: 1.5 } },
  { name: 'v2 F16 moe_layer_freq 2 tied sharded eps 0.02', masks: [[3]],
    options: { version: 'v2', dtype: 'F16', seed: 23, layers: 4, hidden: 40, heads: 2, qLoraRank: null, kvLoraRank: 12, qkNopeHeadDim: 12, qkRopeHeadDim: 8, vHeadDim: 6,
      experts: 6, topK: 2, firstKDenseReplace: 0, moeLayerFreq: 2, tie: true, shards: 2, ropeTheta: 1e5, rmsNormEps: 0.02 } },
  { name: 'v3 F32 noaux_tc groups YaRN q_lora', masks: [[1, 6], [2]],
    options: { version: 'v3', dtype: 'F32', seed: 31, layers: 3, qLoraRank: 24, experts: 8, nGroup: 2, topkGroup: 1, topK: 2, nSharedExperts: 1, firstKDenseReplace: 1,
      routedScalingFactor: 2.5, normTopK: true, ropeScaling: yarnV3, maxPositionEmbeddings: 2048 } },
  { name: 'v3 BF16 plain top-k rope_interleave false no norm fused experts', masks: [[0, 3]],
    options: { version: 'v3', dtype: 'BF16', seed: 32, fusedExperts: true, layers: 2, qLoraRank: null, experts: 6, nGroup: 1, topkGroup: 1, topK: 3, nSharedExperts: 2, firstKDenseReplace: 0,
      routedScalingFactor: 1.5, normTopK: false, ropeInterleave: false, qkRopeHeadDim: 6 } },
  { name: 'v3 F16 12 experts 3 groups first-dense 0 eps 0.05', masks: [[0, 9]],
    options: { version: 'v3', dtype: 'F16', seed: 33, layers: 3, hidden: 48, heads: 3, qLoraRank: 20, experts: 12, nGroup: 3, topkGroup: 2, topK: 4, nSharedExperts: 1,
      firstKDenseReplace: 0, routedScalingFactor: 2.0, normTopK: true, rmsNormEps: 0.05, ropeTheta: 50000 } },
  // FP8: hidden 136 and the dense FFN 144 span two 128-blocks with a partial edge block. As
  // DeepSeek-V3 ships, with its multi-token-prediction layer in the files (never run).
  { name: 'v3 FP8 128x128 blocks with partial edges YaRN MTP layer', masks: [[5]],
    options: { version: 'v3', dtype: 'F8_E4M3', seed: 34, nextnLayers: 1, layers: 2, hidden: 136, heads: 2, qLoraRank: 24, experts: 8, nGroup: 2, topkGroup: 1, topK: 2, ffn: 16, denseFfn: 144,
      nSharedExperts: 1, firstKDenseReplace: 1, routedScalingFactor: 2.5, normTopK: true, ropeScaling: yarnV3, maxPositionEmbeddings: 2048 } },
  // norm_topk_prob on V2: transformers never reads it, the Hub remote code normalises and then
  // skips routed_scaling_factor (see tests/reference/deepseek.ts). The engine may refuse such a
  // config by name; it must never silently score it another way.
  { name: 'v2 F32 norm_topk_prob true', masks: [], mayRefuse: /norm_topk_prob/,
    options: { version: 'v2', dtype: 'F32', seed: 24, layers: 2, qLoraRank: null, topkMethod: 'greedy', experts: 6, topK: 3, normTopK: true, routedScalingFactor: 1.0, firstKDenseReplace: 1 } },
  { name: 'v2 F32 norm_topk_prob true with routed_scaling_factor 2', masks: [], mayRefuse: /norm_topk_prob/,
    options: { version: 'v2', dtype: 'F32', seed: 25, layers: 2, qLoraRank: null, topkMethod: 'greedy', experts: 6, topK: 3, normTopK: true, routedScalingFactor: 2.0, firstKDenseReplace: 1 } },
]

function moeLayers(o: TinyDeepseekOptions): number[] {
  const layers = o.layers ?? 2, firstK = o.firstKDenseReplace ?? 1, freq = o.moeLayerFreq ?? 1
  return Array.from({ length: layers }, (_, l) => l).filter(l => l >= firstK && l % freq === 0)
}

function hookVariants(c: Case): { name: string; ref: RefHooks; edits: VariantEdits }[] {
  const moe = moeLayers(c.options)
  const out: { name: string; ref: RefHooks; edits: VariantEdits }[] = [{ name: 'plain', ref: {}, edits: emptyEdits() }]
  for (const masked of c.masks) {
    out.push({ name: `mask ${moe[0]}:${masked}`, ref: { disabled: { [moe[0]]: masked } }, edits: { overrides: {}, layers: { [moe[0]]: { disabled: masked } } } })
  }
  const keep = 0.4
  const neuron = { name: `neuron top-k ${keep}`, ref: { neuronKeep: Object.fromEntries(moe.map(l => [l, keep])) }, edits: { overrides: {}, layers: Object.fromEntries(moe.map(l => [l, { neuronKeep: keep }])) } }
  out.push(neuron)
  if (c.masks.length) {
    const masked = c.masks[0]
    out.push({
      name: `mask ${moe[0]}:${masked} + neuron top-k`,
      ref: { ...neuron.ref, disabled: { [moe[0]]: masked } },
      edits: { overrides: {}, layers: Object.fromEntries(moe.map(l => [l, { neuronKeep: keep, ...(l === moe[0] ? { disabled: masked } : {}) }])) },
    })
  }
  return out
}

async function assertParity(modelDir: string, config: Record<string, any>, tensors: Map<string, { shape: number[]; data: Float32Array }>, variants: { name: string; ref: RefHooks; edits: VariantEdits }[]) {
  const ckpt = openCheckpoint(modelDir)
  for (const variant of variants) {
    const scorer = await createLocalScorer(ckpt, variant.edits, { device: 'cpu', threads: 1 })
    try {
      const results = await scorer.score(SEQS.map(s => ({ prefix: s, branches: [], scorePrefixFrom: 1 })))
      SEQS.forEach((seq, si) => {
        const ref = referenceLogprobs(config, tensors, seq, variant.ref)
        assert.equal(results[si].prefix.length, seq.length - 1)
        const diffs = results[si].prefix.map((v, i) => Math.abs(v - ref[i]))
        const worst = Math.max(...diffs)
        assert.ok(worst < TOL, `${variant.name}, sequence ${si}: max |diff| ${worst.toExponential(3)} first at position ${diffs.findIndex(x => x >= TOL) + 1}`)
      })
    } finally {
      await scorer.release()
    }
  }
}

describe('DeepSeek ONNX log-probs match the float64 reference within 1e-4', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const model = writeTinyDeepseek(path.join(dir, c.name.replace(/\W+/g, '_')), c.options)
      try {
        await assertParity(model.dir, model.config, model.tensors, hookVariants(c))
      } catch (e) {
        if (!c.mayRefuse || e instanceof assert.AssertionError || !c.mayRefuse.test((e as Error).message)) throw e
      }
    })
  }

  it('kept-router hooks on DeepSeek-V3: bound slots, a novice slot and a per-layer top-k', async () => {
    const o: TinyDeepseekOptions = { version: 'v3', dtype: 'F32', seed: 35, layers: 2, experts: 8, nGroup: 2, topkGroup: 1, topK: 3, firstKDenseReplace: 1, normTopK: true }
    const model = writeTinyDeepseek(path.join(dir, 'v3_kept_router'), o)
    const hidden = model.config.hidden_size as number
    const novice = Float32Array.from({ length: hidden }, (_, i) => Math.sin(i) * 0.3)
    await assertParity(model.dir, model.config, model.tensors, [
      { name: 'bind 1→0, 6→5', ref: { bindings: { 1: { 1: 0, 6: 5 } } }, edits: { overrides: {}, layers: { 1: { bindings: { 1: 0, 6: 5 } } } } },
      { name: 'novice slot 2', ref: { novices: { 1: { 2: novice } } }, edits: { overrides: {}, layers: { 1: { novices: { 2: novice } } } } },
      { name: 'top-k 2', ref: { topK: { 1: 2 } }, edits: { overrides: {}, layers: { 1: { topK: 2 } } } },
    ])
  })

  // The Qwen-MoE families publish YaRN checkpoints (rope_scaling in v4, rope_parameters in v5);
  // both forms are covered. Mixtral and OLMoE refuse any rope type but 'default', naming the field.
  const yarnFamilies = [['mixtral', 'v4'], ['olmoe', 'v5'], ['qwen2_moe', 'v4'], ['qwen3_moe', 'v5']] as const
  for (const [family, form] of yarnFamilies) {
    const refused = family === 'mixtral' || family === 'olmoe'
    it(`YaRN on ${family} in the transformers ${form} form (${form === 'v4' ? 'rope_scaling' : 'rope_parameters'})${refused ? ' is refused' : ''}`, async () => {
      const model = writeTinyCheckpoint(path.join(dir, `${family}_yarn_${form}`), { family, seed: 41, ropeTheta: 1e5 })
      const yarn = { factor: 4.0, original_max_position_embeddings: 512, beta_fast: 16, beta_slow: 2 }
      const config: Record<string, any> = { ...model.config, max_position_embeddings: 2048 }
      if (form === 'v4') {
        config.rope_scaling = { type: 'yarn', ...yarn }
      } else {
        delete config.rope_theta
        config.rope_parameters = { rope_type: 'yarn', rope_theta: 1e5, ...yarn }
      }
      fs.writeFileSync(path.join(model.dir, 'config.json'), JSON.stringify(config, null, 2))
      if (refused) {
        const field = form === 'v4' ? /rope_scaling\.rope_type 'yarn' is not supported/ : /rope_parameters\.rope_type 'yarn' is not supported/
        assert.throws(() => openCheckpoint(model.dir), (e: unknown) => (e as { code?: string }).code === 'CONFIG_UNSUPPORTED' && field.test((e as Error).message))
        return
      }
      await assertParity(model.dir, config, model.tensors, [
        { name: 'plain', ref: {}, edits: emptyEdits() },
        { name: 'mask 0:1', ref: { disabled: { 0: [1] } }, edits: { overrides: {}, layers: { 0: { disabled: [1] } } } },
      ])
    })
  }

  it('the checks are not vacuous: YaRN, the latent-norm eps, routing knobs and masks all move the reference', () => {
    const base: TinyDeepseekOptions = { version: 'v3', seed: 51, layers: 2, experts: 8, nGroup: 2, topkGroup: 1, topK: 2, firstKDenseReplace: 1, ropeScaling: yarnV3, maxPositionEmbeddings: 2048 }
    const model = writeTinyDeepseek(path.join(dir, 'vacuous'), base)
    const cfg = model.config as Record<string, any>
    const seq = SEQS[0]
    const ref = referenceLogprobs(cfg, model.tensors, seq)
    const moved = (name: string, config: Record<string, any>, hooks: RefHooks = {}) => {
      const other = referenceLogprobs(config, model.tensors, seq, hooks)
      const diff = Math.max(...other.map((v, i) => Math.abs(v - ref[i])))
      assert.ok(diff > 1e-3, `${name} should change the log-probs (max diff ${diff})`)
    }
    moved('plain rope instead of YaRN', { ...cfg, rope_scaling: null })
    moved('mscale_all_dim 0 (no softmax correction)', { ...cfg, rope_scaling: { ...yarnV3, mscale_all_dim: 0 } })
    moved('rope_interleave false', { ...cfg, rope_interleave: false })
    moved('one group instead of two', { ...cfg, n_group: 1, topk_group: 1 })
    moved('routed_scaling_factor 1', { ...cfg, routed_scaling_factor: 1 })
    moved('norm_topk_prob false', { ...cfg, norm_topk_prob: false })
    moved('two experts masked', cfg, { disabled: { 1: [0, 4] } })
    moved('neuron top-k 0.3', cfg, { neuronKeep: { 1: 0.3 } })
    const unbiased = new Map(model.tensors)
    const bias = model.tensors.get('model.layers.1.mlp.gate.e_score_correction_bias')!
    unbiased.set('model.layers.1.mlp.gate.e_score_correction_bias', { shape: bias.shape, data: new Float32Array(bias.data.length) })
    const noBias = referenceLogprobs(cfg, unbiased, seq)
    assert.ok(Math.max(...noBias.map((v, i) => Math.abs(v - ref[i]))) > 1e-3, 'the correction bias should steer the selection')
  })
})
