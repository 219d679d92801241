// Parses a HuggingFace config.json into the one architecture description the whole harness uses.
// Absent keys take the transformers configuration-class default (configDefaults.ts). Anything that
// would change results and is not implemented (an unsupported rope type, an active sliding window,
// an unknown architecture) is an error naming the field, never a silently different model.
import { fail } from '../errors.ts'
import { unknownName } from '../util/suggest.ts'
import { configKeyIn, configValue } from './configDefaults.ts'
import { parseRope, yarnMscale, type RopeSpec } from './rope.ts'

export type Family = 'mixtral' | 'olmoe' | 'qwen2_moe' | 'qwen3_moe' | 'deepseek_v2' | 'deepseek_v3'

export const ARCHITECTURES: Record<string, Family> = {
  MixtralForCausalLM: 'mixtral',
  OlmoeForCausalLM: 'olmoe',
  Qwen2MoeForCausalLM: 'qwen2_moe',
  Qwen3MoeForCausalLM: 'qwen3_moe',
  DeepseekV2ForCausalLM: 'deepseek_v2',
  DeepseekV3ForCausalLM: 'deepseek_v3',
}

/**
 * How a MoE layer turns router logits into its top-k experts and their weights.
 * - softmax + greedy: top-k of softmax(logits) (Mixtral, OLMoE, Qwen, DeepSeek-V2 'greedy').
 * - softmax + group_limited_greedy (DeepSeek-V2): group score = max prob in the group; keep the
 *   topk_group best groups, other experts' scores become 0.0; top-k of those (transformers
 *   DeepseekV2Moe.route_tokens_to_experts).
 * - sigmoid + noaux_tc (DeepSeek-V3): s = sigmoid(logits); selection on s + e_score_correction_bias:
 *   group score = sum of its top-2, keep topk_group groups, others 0.0, top-k; weights are s of the
 *   chosen experts (bias never in the weights) (transformers DeepseekV3TopkRouter).
 * Then, if normTopK, weights /= (sum + 1e-20 for sigmoid; sum for softmax), and × routedScalingFactor.
 */
export interface RouterSpec {
  scoring: 'softmax' | 'sigmoid'
  topkMethod: 'greedy' | 'group_limited_greedy' | 'noaux_tc'
  /** Number of expert groups (1 = no grouping); experts e·G/E.. form group floor(e / (E / G)). */
  nGroup: number
  /** Groups kept per token. */
  topkGroup: number
  routedScalingFactor: number
  /** Added to the top-k weight sum before renormalising (DeepSeek: 1e-20; others: 0). */
  normEpsilon: number
  /** DeepSeek-V3's mlp.gate.e_score_correction_bias [E] (selection only). */
  correctionBias: boolean
}

export interface MoeLayerSpec {
  kind: 'moe'
  index: number
  numExperts: number
  topK: number
  /** Expert intermediate size F. */
  expertFfn: number
  /** Whether the top-k weights are renormalised to sum to 1. */
  normTopK: boolean
  router: RouterSpec
  /** Always-on shared expert's intermediate size (Qwen2-MoE; DeepSeek n_shared_experts × F); 0 when absent. */
  sharedExpertFfn: number
  /** Qwen2-MoE multiplies its shared expert by sigmoid(shared_expert_gate x); DeepSeek's is ungated. */
  sharedExpertGated: boolean
}

export interface DenseLayerSpec {
  kind: 'dense'
  index: number
  ffn: number
}

export type LayerSpec = MoeLayerSpec | DenseLayerSpec

/** DeepSeek's Multi-head Latent Attention (transformers DeepseekV2Attention / DeepseekV3Attention). */
export interface MlaSpec {
  /** null: q_proj directly (DeepSeek-V2-Lite); else q_a_proj → q_a_layernorm → q_b_proj. */
  qLoraRank: number | null
  kvLoraRank: number
  qkNopeHeadDim: number
  qkRopeHeadDim: number
  vHeadDim: number
  /**
   * eps of q_a_layernorm / kv_a_layernorm: transformers builds them as RMSNorm(rank) with the class
   * default 1e-6, not config.rms_norm_eps.
   */
  latentNormEps: number
  /**
   * Rotary pairs are adjacent (x[2i], x[2i+1]): always on V2 (complex form), rope_interleave on V3;
   * false means rotate_half pairs (x[i], x[i + d/2]).
   */
  interleave: boolean
}

export interface ModelSpec {
  family: Family
  architecture: string
  vocabSize: number
  hiddenSize: number
  numHeads: number
  numKvHeads: number
  /** Per-head query/key size for GQA; for MLA, qk_nope_head_dim + qk_rope_head_dim. */
  headDim: number
  ropeTheta: number
  rope: RopeSpec
  /** Softmax scale of attention scores: head_dim^-0.5 (× YaRN mscale² for DeepSeek-V3). */
  attentionScale: number
  rmsNormEps: number
  maxPositions: number
  tieWordEmbeddings: boolean
  /** Bias on q/k/v projections (Qwen2-MoE qkv_bias; others via attention_bias; MLA: q_a/kv_a projections). */
  qkvBias: boolean
  /** Bias on the output projection (attention_bias on OLMoE / Qwen3-MoE / DeepSeek). */
  oBias: boolean
  /** 'full': RMSNorm over the whole projected q/k (OLMoE); 'head': per head over head_dim (Qwen3-MoE). */
  qkNorm: 'none' | 'full' | 'head'
  clipQkv: number | null
  /** Longest sequence the model attends over in full; longer inputs are refused. */
  slidingWindow: number | null
  /** Set for DeepSeek (Multi-head Latent Attention); null for grouped-query attention. */
  mla: MlaSpec | null
  layers: LayerSpec[]
}

type Json = Record<string, unknown>

/** Typed access to config keys with the family's transformers defaults. */
class ConfigReader {
  constructor(private cfg: Json, readonly family: Family) {}

  /** Whether config.json gives the key, under its own name or an attribute_map alias (configDefaults.ts). */
  has(key: string): boolean {
    return configKeyIn(this.cfg, this.family, key) !== undefined
  }

  raw(key: string): unknown {
    return configValue(this.cfg, this.family, key)
  }

  num(key: string): number {
    const v = this.raw(key)
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      if (!this.has(key)) fail('CONFIG_INVALID', `config.json has no '${key}' and the transformers default is ${JSON.stringify(v)}; add '${key}' to config.json.`)
      fail('CONFIG_INVALID', `config.json: '${key}' must be a number (got ${JSON.stringify(v)}).`)
    }
    return v
  }

  int(key: string, min = 1): number {
    const v = this.num(key)
    if (!Number.isInteger(v) || v < min) fail('CONFIG_INVALID', `config.json: '${key}' must be an integer >= ${min} (got ${v}).`)
    return v
  }

  /** null / false / true; transformers tests these keys for truthiness, so null reads as false. */
  bool(key: string): boolean {
    const v = this.raw(key)
    if (v === null) return false
    if (typeof v !== 'boolean') fail('CONFIG_INVALID', `config.json: '${key}' must be true or false (got ${JSON.stringify(v)}).`)
    return v
  }

  /** An integer, or null where transformers gives None a meaning. */
  intOrNull(key: string, min = 1): number | null {
    return this.raw(key) === null ? null : this.int(key, min)
  }
}

export function parseModelSpec(cfg: Json): ModelSpec {
  const archs = cfg.architectures
  const arch = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : undefined
  if (!arch) fail('CONFIG_INVALID', `config.json has no 'architectures' list; add e.g. "architectures": ["MixtralForCausalLM"].`)
  const family = ARCHITECTURES[arch]
  if (!family) {
    try {
      unknownName('architecture', arch, Object.keys(ARCHITECTURES))
    } catch (e) {
      fail('UNKNOWN_ARCHITECTURE', `config.json: ${(e as Error).message}`)
    }
  }
  const c = new ConfigReader(cfg, family)
  const deepseek = family === 'deepseek_v2' || family === 'deepseek_v3'

  const act = c.raw('hidden_act')
  // transformers activations.py (ACT2FN) maps both 'silu' and 'swish' to SiLU.
  if (act !== 'silu' && act !== 'swish') fail('CONFIG_UNSUPPORTED', `config.json: hidden_act '${act}' is not supported; only 'silu' (= 'swish'; SwiGLU experts) is implemented.`)
  const partial = (cfg.partial_rotary_factor ?? (cfg.rope_parameters as Json | null | undefined)?.partial_rotary_factor) as unknown
  if (partial != null && partial !== 1) {
    fail('CONFIG_UNSUPPORTED', `config.json: partial_rotary_factor ${partial} is not supported (only 1).`)
  }

  const hiddenSize = c.int('hidden_size')
  const numHeads = c.int('num_attention_heads')
  // transformers: num_key_value_heads None means num_attention_heads (multi-head attention).
  const numKvHeads = c.intOrNull('num_key_value_heads') ?? numHeads
  if (numHeads % numKvHeads !== 0) {
    fail('CONFIG_INVALID', `config.json: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads}).`)
  }
  const numLayers = c.int('num_hidden_layers')
  const vocabSize = c.int('vocab_size')
  const maxPositions = c.int('max_position_embeddings')
  const rmsNormEps = c.num('rms_norm_eps')
  const tieWordEmbeddings = c.bool('tie_word_embeddings')
  const defaultTheta = family === 'mixtral' ? 1e6 : 10000

  let mla: MlaSpec | null = null
  let headDim: number
  let ropeDim: number
  if (deepseek) {
    if (c.has('mlp_bias') && c.raw('mlp_bias') === true) {
      fail('CONFIG_UNSUPPORTED', `config.json: mlp_bias true is not supported (MLP biases are not implemented).`)
    }
    mla = {
      qLoraRank: c.intOrNull('q_lora_rank'),
      kvLoraRank: c.int('kv_lora_rank'),
      qkNopeHeadDim: c.int('qk_nope_head_dim', 0),
      qkRopeHeadDim: c.int('qk_rope_head_dim'),
      vHeadDim: c.int('v_head_dim'),
      latentNormEps: 1e-6,
      interleave: family === 'deepseek_v2' ? true : c.bool('rope_interleave'),
    }
    headDim = mla.qkNopeHeadDim + mla.qkRopeHeadDim
    ropeDim = mla.qkRopeHeadDim
  } else {
    // OLMoE and Qwen2-MoE derive head_dim; Mixtral and Qwen3-MoE honour an explicit head_dim.
    const explicitHeadDim = family === 'mixtral' || family === 'qwen3_moe'
    headDim = explicitHeadDim && c.raw('head_dim') != null ? c.int('head_dim') : hiddenSize / numHeads
    ropeDim = headDim
  }
  if (!Number.isInteger(ropeDim) || ropeDim % 2 !== 0) {
    fail('CONFIG_INVALID', `config.json: rotary dimension ${ropeDim} must be an even integer (${deepseek ? 'qk_rope_head_dim' : 'hidden_size / num_attention_heads or head_dim'}).`)
  }
  // transformers could compute YaRN for every family (ROPE_INIT_FUNCTIONS in each rotary embedding),
  // but only the Qwen-MoE and DeepSeek families publish checkpoints that carry it. On Mixtral and
  // OLMoE a non-default rope type is refused by name, as the project's acceptance case 01 requires:
  // such a config is far more likely a mistake than a real checkpoint.
  const allowYarn = family !== 'mixtral' && family !== 'olmoe'
  const rope = parseRope(cfg, { dim: ropeDim, defaultTheta, maxPositions, allowYarn, family: arch })
  let attentionScale = 1 / Math.sqrt(headDim)
  if (deepseek && rope.yarn?.mscaleAllDim) {
    // transformers DeepseekV3Attention (and DeepseekV2Attention since transformers PR #47435, as the
    // Hub remote code always did): scaling *= yarn_get_mscale(factor, mscale_all_dim)².
    const m = yarnMscale(rope.yarn.factor, rope.yarn.mscaleAllDim)
    attentionScale *= m * m
  }

  let slidingWindow: number | null = null
  const useSliding = family === 'mixtral' ? c.raw('sliding_window') != null : (family === 'qwen2_moe' || family === 'qwen3_moe') && c.bool('use_sliding_window')
  if (useSliding) slidingWindow = c.int('sliding_window')

  const layers: LayerSpec[] = []
  const softmaxRouter: RouterSpec = { scoring: 'softmax', topkMethod: 'greedy', nGroup: 1, topkGroup: 1, routedScalingFactor: 1, normEpsilon: 0, correctionBias: false }
  if (family === 'mixtral' || family === 'olmoe') {
    const numExperts = c.int(family === 'mixtral' ? 'num_local_experts' : 'num_experts')
    const topK = c.int('num_experts_per_tok')
    if (topK > numExperts) fail('CONFIG_INVALID', `config.json: num_experts_per_tok (${topK}) exceeds the number of experts (${numExperts}).`)
    for (let i = 0; i < numLayers; i++) {
      layers.push({
        kind: 'moe', index: i, numExperts, topK, expertFfn: c.int('intermediate_size'),
        normTopK: family === 'mixtral' ? true : c.bool('norm_topk_prob'), router: softmaxRouter, sharedExpertFfn: 0, sharedExpertGated: false,
      })
    }
  } else if (family === 'qwen2_moe' || family === 'qwen3_moe') {
    const numExperts = c.int('num_experts', 0)
    const topK = c.int('num_experts_per_tok')
    const step = c.int('decoder_sparse_step')
    const mlpOnly = (c.raw('mlp_only_layers') ?? []) as unknown
    if (!Array.isArray(mlpOnly) || !mlpOnly.every(x => Number.isInteger(x))) {
      fail('CONFIG_INVALID', `config.json: mlp_only_layers must be a list of layer indices.`)
    }
    if (numExperts > 0 && topK > numExperts) fail('CONFIG_INVALID', `config.json: num_experts_per_tok (${topK}) exceeds num_experts (${numExperts}).`)
    for (let i = 0; i < numLayers; i++) {
      const sparse = !mlpOnly.includes(i) && numExperts > 0 && (i + 1) % step === 0
      if (sparse) {
        // Qwen2-MoE always builds its shared expert (transformers Qwen2MoeSparseMoeBlock); a size of 0 is not a way to omit it.
        const sharedExpertFfn = family === 'qwen2_moe' ? c.int('shared_expert_intermediate_size') : 0
        layers.push({
          kind: 'moe', index: i, numExperts, topK, expertFfn: c.int('moe_intermediate_size'),
          normTopK: c.bool('norm_topk_prob'), router: softmaxRouter, sharedExpertFfn, sharedExpertGated: sharedExpertFfn > 0,
        })
      } else {
        layers.push({ kind: 'dense', index: i, ffn: c.int('intermediate_size') })
      }
    }
  } else {
    layers.push(...deepseekLayers(c, numLayers))
  }

  const clip = family === 'olmoe' ? c.raw('clip_qkv') : cfg.clip_qkv
  if (clip != null && (family !== 'olmoe' || typeof clip !== 'number' || clip <= 0)) {
    fail('CONFIG_UNSUPPORTED', `config.json: clip_qkv ${JSON.stringify(clip)} is only supported as a positive number on OlmoeForCausalLM.`)
  }
  const attentionBias = family === 'mixtral' || family === 'qwen2_moe' ? cfg.attention_bias === true : c.bool('attention_bias')
  if (attentionBias && (family === 'mixtral' || family === 'qwen2_moe')) fail('CONFIG_UNSUPPORTED', `config.json: attention_bias is not part of ${arch}.`)
  return {
    family,
    architecture: arch,
    vocabSize,
    hiddenSize,
    numHeads,
    numKvHeads: deepseek ? numHeads : numKvHeads,
    headDim,
    ropeTheta: rope.theta,
    rope,
    attentionScale,
    rmsNormEps,
    maxPositions,
    tieWordEmbeddings,
    qkvBias: family === 'qwen2_moe' ? c.bool('qkv_bias') : attentionBias,
    oBias: family === 'qwen2_moe' ? false : attentionBias,
    qkNorm: family === 'olmoe' ? 'full' : family === 'qwen3_moe' ? 'head' : 'none',
    clipQkv: (clip as number | null | undefined) ?? null,
    slidingWindow,
    mla,
    layers,
  }
}

/**
 * DeepSeek layers: dense for i < first_k_dense_replace, MoE after (transformers); the Hub remote
 * code also honours moe_layer_freq (MoE where i % freq == 0), which we follow since transformers
 * cannot load such a checkpoint at all.
 */
function deepseekLayers(c: ConfigReader, numLayers: number): LayerSpec[] {
  const v3 = c.family === 'deepseek_v3'
  const E = c.int('n_routed_experts')
  const topK = c.int('num_experts_per_tok')
  if (topK > E) fail('CONFIG_INVALID', `config.json: num_experts_per_tok (${topK}) exceeds n_routed_experts (${E}).`)
  const firstDense = c.int('first_k_dense_replace', 0)
  const freq = c.int('moe_layer_freq')
  const F = c.int('moe_intermediate_size')
  // n_shared_experts: null means none (transformers V2: `if config.n_shared_experts is not None`).
  const nShared = c.intOrNull('n_shared_experts', 0) ?? 0
  const scaling = c.num('routed_scaling_factor')
  let router: RouterSpec
  let normTopK: boolean
  if (v3) {
    // transformers hard-codes sigmoid scores and noaux_tc selection; a config saying otherwise would be ignored there.
    const scoring = c.raw('scoring_func'), method = c.raw('topk_method')
    if (scoring !== 'sigmoid') fail('CONFIG_UNSUPPORTED', `config.json: scoring_func '${scoring}' is not supported for DeepseekV3ForCausalLM (transformers always uses 'sigmoid').`)
    if (method !== 'noaux_tc') fail('CONFIG_UNSUPPORTED', `config.json: topk_method '${method}' is not supported for DeepseekV3ForCausalLM (transformers always uses 'noaux_tc').`)
    const nGroup = c.int('n_group'), topkGroup = c.int('topk_group')
    router = { scoring: 'sigmoid', topkMethod: 'noaux_tc', nGroup, topkGroup, routedScalingFactor: scaling, normEpsilon: 1e-20, correctionBias: true }
    normTopK = c.bool('norm_topk_prob')
  } else {
    const method = c.raw('topk_method')
    if (method !== 'greedy' && method !== 'group_limited_greedy') {
      fail('CONFIG_UNSUPPORTED', `config.json: topk_method '${method}' is not supported for DeepseekV2ForCausalLM; use 'greedy' or 'group_limited_greedy' (transformers DeepseekV2Moe).`)
    }
    const scoring = c.has('scoring_func') ? c.raw('scoring_func') : 'softmax'
    if (scoring !== 'softmax') fail('CONFIG_UNSUPPORTED', `config.json: scoring_func '${scoring}' is not supported for DeepseekV2ForCausalLM (softmax only).`)
    const grouped = method === 'group_limited_greedy'
    const nGroup = grouped ? c.int('n_group') : 1, topkGroup = grouped ? c.int('topk_group') : 1
    router = { scoring: 'softmax', topkMethod: method, nGroup, topkGroup, routedScalingFactor: scaling, normEpsilon: 1e-20, correctionBias: false }
    // transformers' DeepseekV2Moe declares norm_topk_prob but never reads it. Rather than ignore the
    // key we follow the Hub remote code (modeling_deepseek.py MoEGate): when top_k > 1 and
    // norm_topk_prob, weights / (sum + 1e-20) and routed_scaling_factor is NOT applied; otherwise
    // weights × routed_scaling_factor. No published DeepSeek-V2 checkpoint sets it.
    normTopK = topK > 1 && c.bool('norm_topk_prob')
    if (normTopK) router.routedScalingFactor = 1
  }
  if (E % router.nGroup !== 0) fail('CONFIG_INVALID', `config.json: n_routed_experts (${E}) must be a multiple of n_group (${router.nGroup}).`)
  if (router.topkGroup > router.nGroup) fail('CONFIG_INVALID', `config.json: topk_group (${router.topkGroup}) exceeds n_group (${router.nGroup}).`)
  if (router.topkGroup * (E / router.nGroup) < topK) {
    fail('CONFIG_INVALID', `config.json: topk_group (${router.topkGroup}) groups of ${E / router.nGroup} experts cannot supply num_experts_per_tok (${topK}) experts.`)
  }
  const layers: LayerSpec[] = []
  for (let i = 0; i < numLayers; i++) {
    if (i >= firstDense && i % freq === 0) {
      layers.push({
        kind: 'moe', index: i, numExperts: E, topK, expertFfn: F, normTopK, router,
        sharedExpertFfn: nShared * F, sharedExpertGated: false,
      })
    } else {
      layers.push({ kind: 'dense', index: i, ffn: c.int('intermediate_size') })
    }
  }
  return layers
}

export function moeLayers(spec: ModelSpec): MoeLayerSpec[] {
  return spec.layers.filter((l): l is MoeLayerSpec => l.kind === 'moe')
}

/** The group of expert slot e under the layer's router (0 when ungrouped). */
export function expertGroup(layer: MoeLayerSpec, e: number): number {
  return Math.floor(e / (layer.numExperts / layer.router.nGroup))
}
