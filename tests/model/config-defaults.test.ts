// config.json → ModelSpec: absent keys take the transformers configuration-class default
// (src/model/configDefaults.ts), explicit null is not absent where transformers says so, rope
// parameters in both file generations (v4 rope_theta + rope_scaling, v5 rope_parameters), YaRN as
// modeling_rope_utils computes it, and errors that name the field.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { groupedRemovalProblem, validateEdits } from '../../src/edits/variantEdits.ts'
import { CONFIG_DEFAULTS } from '../../src/model/configDefaults.ts'
import { moeLayers, parseModelSpec, type Family, type MoeLayerSpec } from '../../src/model/modelSpec.ts'

type Json = Record<string, unknown>

const ARCH: Record<Family, string> = {
  mixtral: 'MixtralForCausalLM', olmoe: 'OlmoeForCausalLM', qwen2_moe: 'Qwen2MoeForCausalLM', qwen3_moe: 'Qwen3MoeForCausalLM',
  deepseek_v2: 'DeepseekV2ForCausalLM', deepseek_v3: 'DeepseekV3ForCausalLM',
}

/** A small config naming only the sizes; every other key is left to the defaults. */
function minimal(family: Family, extra: Json = {}): Json {
  const sizes: Json = { architectures: [ARCH[family]], vocab_size: 64, hidden_size: 32, num_hidden_layers: 3, num_attention_heads: 4 }
  if (family === 'mixtral') Object.assign(sizes, { num_key_value_heads: 2, num_local_experts: 4, intermediate_size: 16 })
  if (family === 'olmoe') Object.assign(sizes, { num_experts: 4, num_experts_per_tok: 2, intermediate_size: 16 })
  if (family === 'qwen2_moe' || family === 'qwen3_moe') Object.assign(sizes, { num_key_value_heads: 2, num_experts: 4, num_experts_per_tok: 2, moe_intermediate_size: 8, intermediate_size: 16 })
  if (family === 'deepseek_v2' || family === 'deepseek_v3') {
    Object.assign(sizes, { n_routed_experts: 8, num_experts_per_tok: 2, moe_intermediate_size: 8, intermediate_size: 16, kv_lora_rank: 8, q_lora_rank: 8, qk_nope_head_dim: 4, qk_rope_head_dim: 4, v_head_dim: 4, first_k_dense_replace: 1 })
    if (family === 'deepseek_v3') Object.assign(sizes, { n_group: 2, topk_group: 1 })
  }
  return { ...sizes, ...extra }
}

function throwsCode(fn: () => unknown, code: string, pattern: RegExp) {
  assert.throws(fn, (e: unknown) => e instanceof HarnessError && e.code === code && pattern.test(e.message), `expected ${code} matching ${pattern}`)
}

describe('absent keys take the transformers configuration-class default', () => {
  it('rope_theta, rms_norm_eps, max_position_embeddings and tie_word_embeddings per family', () => {
    for (const family of Object.keys(ARCH) as Family[]) {
      const spec = parseModelSpec(minimal(family))
      const d = CONFIG_DEFAULTS[family].values
      assert.equal(spec.ropeTheta, d.rope_theta, family)
      assert.equal(spec.rmsNormEps, d.rms_norm_eps, family)
      assert.equal(spec.maxPositions, d.max_position_embeddings, family)
      assert.equal(spec.tieWordEmbeddings, false, family)
      assert.match(CONFIG_DEFAULTS[family].source, /configuration_\w+\.py, class \w+Config$/)
    }
    // The values themselves, as the classes declare them.
    assert.equal(parseModelSpec(minimal('mixtral')).ropeTheta, 1e6)
    assert.equal(parseModelSpec(minimal('qwen3_moe')).ropeTheta, 10000)
    assert.equal(parseModelSpec(minimal('olmoe')).rmsNormEps, 1e-5)
    assert.equal(parseModelSpec(minimal('qwen2_moe')).maxPositions, 32768)
    assert.equal(parseModelSpec(minimal('mixtral')).maxPositions, 131072)
  })

  it('Qwen3-MoE norm_topk_prob defaults to false (case 02), Qwen2-MoE shared expert to 5632 (case 03)', () => {
    assert.equal(moeLayers(parseModelSpec(minimal('qwen3_moe')))[0].normTopK, false)
    assert.equal(moeLayers(parseModelSpec(minimal('qwen3_moe', { norm_topk_prob: true })))[0].normTopK, true)
    const q2 = moeLayers(parseModelSpec(minimal('qwen2_moe')))[0]
    assert.equal(q2.sharedExpertFfn, 5632)
    assert.equal(q2.sharedExpertGated, true)
    assert.equal(parseModelSpec(minimal('qwen2_moe')).qkvBias, true)
    assert.equal(moeLayers(parseModelSpec(minimal('olmoe')))[0].normTopK, false)
    assert.equal(moeLayers(parseModelSpec(minimal('mixtral')))[0].topK, 2)
  })

  it('DeepSeek: routing, shared experts and MLA defaults of DeepseekV2Config / DeepseekV3Config', () => {
    const v2 = parseModelSpec(minimal('deepseek_v2'))
    const l2 = moeLayers(v2)[0]
    assert.deepEqual([v2.layers[0].kind, v2.layers[1].kind], ['dense', 'moe'])
    assert.deepEqual(l2.router, { scoring: 'softmax', topkMethod: 'greedy', nGroup: 1, topkGroup: 1, routedScalingFactor: 1, normEpsilon: 1e-20, correctionBias: false })
    assert.equal(l2.sharedExpertFfn, 2 * 8) // n_shared_experts 2 × moe_intermediate_size
    assert.equal(l2.sharedExpertGated, false)
    assert.equal(v2.mla!.interleave, true)
    assert.equal(v2.mla!.latentNormEps, 1e-6)
    const v3 = parseModelSpec(minimal('deepseek_v3', { rms_norm_eps: 0.01 }))
    const l3 = moeLayers(v3)[0]
    assert.deepEqual(l3.router, { scoring: 'sigmoid', topkMethod: 'noaux_tc', nGroup: 2, topkGroup: 1, routedScalingFactor: 2.5, normEpsilon: 1e-20, correctionBias: true })
    assert.equal(l3.normTopK, true)
    assert.equal(l3.sharedExpertFfn, 8)
    assert.equal(v3.mla!.latentNormEps, 1e-6, 'the latent norms keep RMSNorm’s own eps, not rms_norm_eps')
    assert.equal(v3.rmsNormEps, 0.01)
    assert.equal(v3.headDim, 8)
    assert.equal(v3.attentionScale, 1 / Math.sqrt(8))
  })

  it('explicit null is not absent where transformers gives None a meaning', () => {
    assert.equal(parseModelSpec(minimal('deepseek_v2', { q_lora_rank: null })).mla!.qLoraRank, null)
    const { q_lora_rank: _q, ...noLora } = minimal('deepseek_v2')
    assert.equal(parseModelSpec(noLora).mla!.qLoraRank, 1536)
    assert.equal(moeLayers(parseModelSpec(minimal('deepseek_v2', { n_shared_experts: null })))[0].sharedExpertFfn, 0)
    assert.equal(moeLayers(parseModelSpec(minimal('deepseek_v3', { n_shared_experts: 3 })))[0].sharedExpertFfn, 24)
    const olmoe = parseModelSpec(minimal('olmoe', { num_key_value_heads: null }))
    assert.equal(olmoe.numKvHeads, olmoe.numHeads)
    assert.deepEqual(parseModelSpec(minimal('qwen3_moe', { mlp_only_layers: null })).layers.map(l => l.kind), ['moe', 'moe', 'moe'])
  })
})

describe('rope parameters in both transformers file generations', () => {
  it('v5 rope_parameters.rope_theta equals v4 rope_theta; rope_scaling wins over rope_parameters', () => {
    const v4 = parseModelSpec(minimal('mixtral', { rope_theta: 5000 }))
    const v5 = parseModelSpec(minimal('mixtral', { rope_parameters: { rope_type: 'default', rope_theta: 5000 } }))
    assert.equal(v4.ropeTheta, 5000)
    assert.deepEqual(v5.rope, v4.rope)
    assert.notDeepEqual(parseModelSpec(minimal('mixtral')).rope.invFreq, v4.rope.invFreq)
    const both = parseModelSpec(minimal('qwen3_moe', { rope_scaling: { type: 'yarn', factor: 2, original_max_position_embeddings: 16 }, rope_parameters: { rope_type: 'default', rope_theta: 777 } }))
    assert.equal(both.rope.type, 'yarn')
    assert.equal(both.ropeTheta, 10000)
  })

  it('YaRN inverse frequencies and attention factor as modeling_rope_utils computes them', () => {
    const theta = 10000, dim = 16, factor = 4, orig = 64
    const spec = parseModelSpec(minimal('qwen3_moe', { head_dim: dim, max_position_embeddings: 256, rope_parameters: { rope_type: 'yarn', rope_theta: theta, factor, original_max_position_embeddings: orig } }))
    // The paper's recipe: frequencies with fewer than beta_slow = 1 rotations over the original
    // context are interpolated (/ factor), more than beta_fast = 32 kept, a linear ramp between the
    // (floored / ceiled) correction dimensions.
    const corr = (rot: number) => (dim * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(theta))
    const low = Math.max(0, Math.floor(corr(32))), high = Math.min(dim - 1, Math.ceil(corr(1)))
    spec.rope.invFreq.forEach((got, i) => {
      const base = 1 / Math.pow(theta, (2 * i) / dim)
      const keep = 1 - Math.min(1, Math.max(0, (i - low) / (high - low)))
      const want = (base / factor) * (1 - keep) + base * keep
      assert.ok(Math.abs(got - want) <= 1e-6 * want, `inv_freq[${i}] ${got} vs ${want}`)
    })
    assert.ok(Math.abs(spec.rope.attentionFactor - (0.1 * Math.log(factor) + 1)) < 1e-12)
    assert.ok(spec.rope.invFreq[dim / 2 - 1] < 1 / Math.pow(theta, (dim - 2) / dim), 'the lowest frequency is interpolated')
    const untruncated = parseModelSpec(minimal('qwen3_moe', { head_dim: dim, max_position_embeddings: 256, rope_parameters: { rope_type: 'yarn', rope_theta: theta, factor, original_max_position_embeddings: orig, truncate: false } }))
    assert.notDeepEqual(untruncated.rope.invFreq, spec.rope.invFreq)
  })

  it('DeepSeek: mscale / mscale_all_dim set the cos-sin factor and the softmax scale correction', () => {
    const scaling = { type: 'yarn', factor: 40, original_max_position_embeddings: 64, beta_fast: 32, beta_slow: 1, mscale: 1.0, mscale_all_dim: 1.0 }
    for (const family of ['deepseek_v2', 'deepseek_v3'] as const) {
      const spec = parseModelSpec(minimal(family, { max_position_embeddings: 2560, rope_scaling: scaling }))
      const m = 0.1 * Math.log(40) + 1
      assert.equal(spec.rope.attentionFactor, 1) // mscale / mscale_all_dim = 1
      assert.ok(Math.abs(spec.attentionScale - (m * m) / Math.sqrt(8)) < 1e-12, family)
      assert.equal(spec.rope.dim, 4, 'rotary on qk_rope_head_dim only')
      const half = parseModelSpec(minimal(family, { max_position_embeddings: 2560, rope_scaling: { ...scaling, mscale: 0.5 } }))
      assert.ok(Math.abs(half.rope.attentionFactor - (0.1 * 0.5 * Math.log(40) + 1) / m) < 1e-12)
    }
  })

  it('other rope types are CONFIG_UNSUPPORTED naming the field', () => {
    throwsCode(() => parseModelSpec(minimal('mixtral', { rope_scaling: { type: 'linear', factor: 2 } })), 'CONFIG_UNSUPPORTED', /rope_scaling\.rope_type 'linear'/)
    throwsCode(() => parseModelSpec(minimal('olmoe', { rope_parameters: { rope_type: 'llama3', rope_theta: 1e4, factor: 8 } })), 'CONFIG_UNSUPPORTED', /rope_parameters\.rope_type 'llama3'/)
    throwsCode(() => parseModelSpec(minimal('deepseek_v3', { rope_scaling: { type: 'dynamic', factor: 2 } })), 'CONFIG_UNSUPPORTED', /rope_scaling\.rope_type 'dynamic'/)
    throwsCode(() => parseModelSpec(minimal('qwen3_moe', { rope_parameters: { rope_type: 'yarn', factor: 'big' } })), 'CONFIG_INVALID', /rope_parameters\.factor/)
    // Case 01's kind: YaRN on a family whose published checkpoints never carry it is refused, in both forms.
    throwsCode(() => parseModelSpec(minimal('mixtral', { rope_parameters: { rope_type: 'yarn', rope_theta: 1e4, factor: 4, original_max_position_embeddings: 64 } })), 'CONFIG_UNSUPPORTED', /rope_parameters\.rope_type 'yarn' is not supported for MixtralForCausalLM/)
    throwsCode(() => parseModelSpec(minimal('olmoe', { rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 64 } })), 'CONFIG_UNSUPPORTED', /rope_scaling\.rope_type 'yarn' is not supported for OlmoeForCausalLM/)
  })
})

describe('DeepSeek router configuration errors', () => {
  it('names the field', () => {
    throwsCode(() => parseModelSpec(minimal('deepseek_v3', { scoring_func: 'softmax' })), 'CONFIG_UNSUPPORTED', /scoring_func 'softmax'/)
    throwsCode(() => parseModelSpec(minimal('deepseek_v2', { topk_method: 'noaux_tc' })), 'CONFIG_UNSUPPORTED', /topk_method 'noaux_tc'/)
    throwsCode(() => parseModelSpec(minimal('deepseek_v3', { n_group: 3 })), 'CONFIG_INVALID', /multiple of n_group/)
    throwsCode(() => parseModelSpec(minimal('deepseek_v2', { topk_method: 'group_limited_greedy' })), 'CONFIG_INVALID', /no 'n_group' and the transformers default is null; add 'n_group'/)
    throwsCode(() => parseModelSpec(minimal('deepseek_v3', { n_group: 4, topk_group: 1, num_experts_per_tok: 3 })), 'CONFIG_INVALID', /cannot supply num_experts_per_tok/)
  })

  it('V2 norm_topk_prob follows the Hub MoEGate: renormalised weights without routed_scaling_factor', () => {
    const l = moeLayers(parseModelSpec(minimal('deepseek_v2', { norm_topk_prob: true, routed_scaling_factor: 2 })))[0]
    assert.equal(l.normTopK, true)
    assert.equal(l.router.routedScalingFactor, 1)
    assert.equal(moeLayers(parseModelSpec(minimal('deepseek_v2', { routed_scaling_factor: 2 })))[0].router.routedScalingFactor, 2)
  })
})

describe('group-limited routers keep enough experts (HOOK_INVALID before any work)', () => {
  const spec = parseModelSpec(minimal('deepseek_v3', { n_group: 4, topk_group: 2, num_experts_per_tok: 3 }))
  const layer = moeLayers(spec)[0] as MoeLayerSpec // 8 experts, groups {0,1} {2,3} {4,5} {6,7}
  it('an emptied group or starved kept groups are refused with the reason', () => {
    assert.equal(groupedRemovalProblem(layer, [1]), null) // groups keep 1, 2, 2, 2: any two hold >= 3
    assert.match(groupedRemovalProblem(layer, [0, 1])!, /group 0 \(experts 0\.\.1\) would lose all its experts/)
    assert.match(groupedRemovalProblem(layer, [0, 2])!, /2 smallest expert groups would hold only 2 experts \(per group: 1, 1, 2, 2\).*top-3/)
    throwsCode(() => validateEdits(spec, { overrides: {}, layers: { 1: { disabled: [6, 7] } } }), 'HOOK_INVALID', /layer 1: group 3/)
    validateEdits(spec, { overrides: {}, layers: { 1: { disabled: [1] } } })
    const ungrouped = parseModelSpec(minimal('deepseek_v3', { n_group: 1, topk_group: 1 }))
    validateEdits(ungrouped, { overrides: {}, layers: { 1: { disabled: [0, 1, 2, 3, 4, 5] } } })
  })
})
