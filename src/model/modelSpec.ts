// Parses a HuggingFace config.json into the one architecture description the whole harness uses.
// Anything that would change results and is not implemented (rope scaling, an active sliding window,
// an unknown architecture) is an error naming the field, never a silently different model.
import { fail } from '../errors.ts'
import { unknownName } from '../util/suggest.ts'

export type Family = 'mixtral' | 'olmoe' | 'qwen2_moe' | 'qwen3_moe'

export const ARCHITECTURES: Record<string, Family> = {
  MixtralForCausalLM: 'mixtral',
  OlmoeForCausalLM: 'olmoe',
  Qwen2MoeForCausalLM: 'qwen2_moe',
  Qwen3MoeForCausalLM: 'qwen3_moe',
}

export interface MoeLayerSpec {
  kind: 'moe'
  index: number
  numExperts: number
  topK: number
  /** Expert intermediate size F. */
  expertFfn: number
  /** Whether the top-k softmax probabilities are renormalised to sum to 1. */
  normTopK: boolean
  /** Qwen2-MoE's always-on shared expert (sigmoid-gated); 0 when absent. */
  sharedExpertFfn: number
}

export interface DenseLayerSpec {
  kind: 'dense'
  index: number
  ffn: number
}

export type LayerSpec = MoeLayerSpec | DenseLayerSpec

export interface ModelSpec {
  family: Family
  architecture: string
  vocabSize: number
  hiddenSize: number
  numHeads: number
  numKvHeads: number
  headDim: number
  ropeTheta: number
  rmsNormEps: number
  maxPositions: number
  tieWordEmbeddings: boolean
  /** Bias on q/k/v projections (Qwen2-MoE always; others via attention_bias). */
  qkvBias: boolean
  /** Bias on the output projection (attention_bias on OLMoE / Qwen3-MoE). */
  oBias: boolean
  /** 'full': RMSNorm over the whole projected q/k (OLMoE); 'head': per head over head_dim (Qwen3-MoE). */
  qkNorm: 'none' | 'full' | 'head'
  clipQkv: number | null
  /** Longest sequence the model attends over in full; longer inputs are refused. */
  slidingWindow: number | null
  layers: LayerSpec[]
}

type Json = Record<string, unknown>

function num(cfg: Json, key: string, fallback?: number): number {
  const v = cfg[key] ?? fallback
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    fail('CONFIG_INVALID', `config.json: '${key}' must be a number (got ${JSON.stringify(cfg[key])}).`)
  }
  return v
}

function int(cfg: Json, key: string, fallback?: number, min = 1): number {
  const v = num(cfg, key, fallback)
  if (!Number.isInteger(v) || v < min) fail('CONFIG_INVALID', `config.json: '${key}' must be an integer >= ${min} (got ${v}).`)
  return v
}

function bool(cfg: Json, key: string, fallback: boolean): boolean {
  const v = cfg[key] ?? fallback
  if (typeof v !== 'boolean') fail('CONFIG_INVALID', `config.json: '${key}' must be true or false (got ${JSON.stringify(v)}).`)
  return v
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

  const act = cfg.hidden_act ?? 'silu'
  if (act !== 'silu') fail('CONFIG_UNSUPPORTED', `config.json: hidden_act '${act}' is not supported; only 'silu' (SwiGLU experts) is implemented.`)
  const ropeScaling = cfg.rope_scaling as Json | null | undefined
  if (ropeScaling != null) {
    const type = ropeScaling.rope_type ?? ropeScaling.type
    if (type !== 'default') {
      fail('CONFIG_UNSUPPORTED', `config.json: rope_scaling ${JSON.stringify(ropeScaling)} is not supported; only plain rotary embeddings (rope_scaling: null) are implemented.`)
    }
  }
  if (cfg.partial_rotary_factor != null && cfg.partial_rotary_factor !== 1) {
    fail('CONFIG_UNSUPPORTED', `config.json: partial_rotary_factor ${cfg.partial_rotary_factor} is not supported (only 1).`)
  }

  const hiddenSize = int(cfg, 'hidden_size')
  const numHeads = int(cfg, 'num_attention_heads')
  const numKvHeads = int(cfg, 'num_key_value_heads', numHeads)
  if (numHeads % numKvHeads !== 0) {
    fail('CONFIG_INVALID', `config.json: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads}).`)
  }
  // OLMoE and Qwen2-MoE derive head_dim; Mixtral and Qwen3-MoE honour an explicit head_dim.
  const explicitHeadDim = family === 'mixtral' || family === 'qwen3_moe'
  const headDim = explicitHeadDim && cfg.head_dim != null ? int(cfg, 'head_dim') : hiddenSize / numHeads
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    fail('CONFIG_INVALID', `config.json: head dimension ${headDim} must be an even integer (hidden_size / num_attention_heads or head_dim).`)
  }
  const numLayers = int(cfg, 'num_hidden_layers')
  const vocabSize = int(cfg, 'vocab_size')

  let slidingWindow: number | null = null
  const useSliding = family === 'mixtral' ? cfg.sliding_window != null : cfg.use_sliding_window === true
  if (useSliding) slidingWindow = int(cfg, 'sliding_window')

  const layers: LayerSpec[] = []
  if (family === 'mixtral' || family === 'olmoe') {
    const numExperts = int(cfg, family === 'mixtral' ? 'num_local_experts' : 'num_experts')
    const topK = int(cfg, 'num_experts_per_tok')
    if (topK > numExperts) fail('CONFIG_INVALID', `config.json: num_experts_per_tok (${topK}) exceeds the number of experts (${numExperts}).`)
    for (let i = 0; i < numLayers; i++) {
      layers.push({
        kind: 'moe', index: i, numExperts, topK, expertFfn: int(cfg, 'intermediate_size'),
        normTopK: family === 'mixtral' ? true : bool(cfg, 'norm_topk_prob', false), sharedExpertFfn: 0,
      })
    }
  } else {
    const numExperts = int(cfg, 'num_experts', undefined, 0)
    const topK = int(cfg, 'num_experts_per_tok')
    const step = int(cfg, 'decoder_sparse_step', 1)
    const mlpOnly = (cfg.mlp_only_layers ?? []) as unknown
    if (!Array.isArray(mlpOnly) || !mlpOnly.every(x => Number.isInteger(x))) {
      fail('CONFIG_INVALID', `config.json: mlp_only_layers must be a list of layer indices.`)
    }
    if (numExperts > 0 && topK > numExperts) fail('CONFIG_INVALID', `config.json: num_experts_per_tok (${topK}) exceeds num_experts (${numExperts}).`)
    for (let i = 0; i < numLayers; i++) {
      const sparse = !mlpOnly.includes(i) && numExperts > 0 && (i + 1) % step === 0
      if (sparse) {
        layers.push({
          kind: 'moe', index: i, numExperts, topK, expertFfn: int(cfg, 'moe_intermediate_size'),
          normTopK: bool(cfg, 'norm_topk_prob', family === 'qwen3_moe'),
          sharedExpertFfn: family === 'qwen2_moe' ? int(cfg, 'shared_expert_intermediate_size', 0, 0) : 0,
        })
      } else {
        layers.push({ kind: 'dense', index: i, ffn: int(cfg, 'intermediate_size') })
      }
    }
  }

  const clip = cfg.clip_qkv
  if (clip != null && (family !== 'olmoe' || typeof clip !== 'number' || clip <= 0)) {
    fail('CONFIG_UNSUPPORTED', `config.json: clip_qkv ${JSON.stringify(clip)} is only supported as a positive number on OlmoeForCausalLM.`)
  }
  const attentionBias = bool(cfg, 'attention_bias', false)
  if (attentionBias && family === 'mixtral') fail('CONFIG_UNSUPPORTED', `config.json: attention_bias is not part of MixtralForCausalLM.`)
  return {
    family,
    architecture: arch,
    vocabSize,
    hiddenSize,
    numHeads,
    numKvHeads,
    headDim,
    ropeTheta: num(cfg, 'rope_theta', family === 'mixtral' ? 1e6 : 10000),
    rmsNormEps: num(cfg, 'rms_norm_eps', family === 'mixtral' || family === 'olmoe' ? 1e-5 : 1e-6),
    maxPositions: int(cfg, 'max_position_embeddings', 4096),
    tieWordEmbeddings: bool(cfg, 'tie_word_embeddings', false),
    qkvBias: family === 'qwen2_moe' ? true : attentionBias,
    oBias: family === 'qwen2_moe' ? false : attentionBias,
    qkNorm: family === 'olmoe' ? 'full' : family === 'qwen3_moe' ? 'head' : 'none',
    clipQkv: (clip as number | null | undefined) ?? null,
    slidingWindow,
    layers,
  }
}

export function moeLayers(spec: ModelSpec): MoeLayerSpec[] {
  return spec.layers.filter((l): l is MoeLayerSpec => l.kind === 'moe')
}
