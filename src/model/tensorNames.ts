// The tensor names and shapes of the published Hub checkpoints, per family. Shapes are HF's
// nn.Linear layout [out_features, in_features].
import type { ModelSpec, MoeLayerSpec } from './modelSpec.ts'

export interface ExpertNames { gate: string; up: string; down: string }

/** DeepSeek Multi-head Latent Attention projections (transformers DeepseekV2Attention / DeepseekV3Attention). */
export interface MlaNames {
  /** q_proj when q_lora_rank is null. */
  qProj?: string
  /** q_a_proj → q_a_layernorm → q_b_proj when q_lora_rank is set. */
  qA?: string; qANorm?: string; qB?: string
  qABias?: string
  kvA: string; kvABias?: string
  kvANorm: string
  kvB: string
}

export interface LayerNames {
  inputNorm: string
  postNorm: string
  /** Grouped-query attention projections (absent for MLA, see `mla`). */
  q?: string; k?: string; v?: string
  o: string
  mla?: MlaNames
  qBias?: string; kBias?: string; vBias?: string; oBias?: string
  qNorm?: string; kNorm?: string
  router?: string
  /** DeepSeek-V3's mlp.gate.e_score_correction_bias [E]. */
  correctionBias?: string
  experts?: ExpertNames[]
  sharedExpert?: ExpertNames
  sharedExpertGate?: string
  denseMlp?: ExpertNames
}

export interface ModelNames {
  embed: string
  finalNorm: string
  lmHead: string
  layers: LayerNames[]
}

export function tensorNames(spec: ModelSpec): ModelNames {
  const layers = spec.layers.map((layer): LayerNames => {
    const p = `model.layers.${layer.index}`
    const a = `${p}.self_attn`
    const names: LayerNames = spec.mla
      ? { inputNorm: `${p}.input_layernorm.weight`, postNorm: `${p}.post_attention_layernorm.weight`, o: `${a}.o_proj.weight`, mla: mlaNames(a, spec) }
      : {
        inputNorm: `${p}.input_layernorm.weight`,
        postNorm: `${p}.post_attention_layernorm.weight`,
        q: `${a}.q_proj.weight`,
        k: `${a}.k_proj.weight`,
        v: `${a}.v_proj.weight`,
        o: `${a}.o_proj.weight`,
      }
    if (spec.qkvBias && !spec.mla) {
      names.qBias = `${p}.self_attn.q_proj.bias`
      names.kBias = `${p}.self_attn.k_proj.bias`
      names.vBias = `${p}.self_attn.v_proj.bias`
    }
    if (spec.oBias) names.oBias = `${p}.self_attn.o_proj.bias`
    if (spec.qkNorm !== 'none') {
      names.qNorm = `${p}.self_attn.q_norm.weight`
      names.kNorm = `${p}.self_attn.k_norm.weight`
    }
    if (layer.kind === 'dense') {
      names.denseMlp = { gate: `${p}.mlp.gate_proj.weight`, up: `${p}.mlp.up_proj.weight`, down: `${p}.mlp.down_proj.weight` }
      return names
    }
    if (spec.family === 'mixtral') {
      names.router = `${p}.block_sparse_moe.gate.weight`
      names.experts = Array.from({ length: layer.numExperts }, (_, j) => ({
        gate: `${p}.block_sparse_moe.experts.${j}.w1.weight`,
        up: `${p}.block_sparse_moe.experts.${j}.w3.weight`,
        down: `${p}.block_sparse_moe.experts.${j}.w2.weight`,
      }))
    } else {
      // Qwen-MoE and DeepSeek share the `mlp.experts.N.*_proj` layout; DeepSeek names its always-on
      // experts `shared_experts` (ungated) and may carry a V3 selection bias.
      names.router = `${p}.mlp.gate.weight`
      if (spec.mla && layer.router.correctionBias) names.correctionBias = `${p}.mlp.gate.e_score_correction_bias`
      names.experts = Array.from({ length: layer.numExperts }, (_, j) => ({
        gate: `${p}.mlp.experts.${j}.gate_proj.weight`,
        up: `${p}.mlp.experts.${j}.up_proj.weight`,
        down: `${p}.mlp.experts.${j}.down_proj.weight`,
      }))
      if (layer.sharedExpertFfn > 0) {
        const shared = spec.mla ? `${p}.mlp.shared_experts` : `${p}.mlp.shared_expert`
        names.sharedExpert = { gate: `${shared}.gate_proj.weight`, up: `${shared}.up_proj.weight`, down: `${shared}.down_proj.weight` }
        if (!spec.mla && layer.sharedExpertGated) names.sharedExpertGate = `${p}.mlp.shared_expert_gate.weight`
      }
    }
    return names
  })
  return {
    embed: 'model.embed_tokens.weight',
    finalNorm: 'model.norm.weight',
    lmHead: spec.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
    layers,
  }
}

function mlaNames(a: string, spec: ModelSpec): MlaNames {
  const bias = spec.oBias
  const names: MlaNames = spec.mla!.qLoraRank === null
    ? { qProj: `${a}.q_proj.weight`, kvA: '', kvANorm: '', kvB: '' }
    : { qA: `${a}.q_a_proj.weight`, qANorm: `${a}.q_a_layernorm.weight`, qB: `${a}.q_b_proj.weight`, kvA: '', kvANorm: '', kvB: '' }
  if (bias && names.qA) names.qABias = `${a}.q_a_proj.bias`
  names.kvA = `${a}.kv_a_proj_with_mqa.weight`
  if (bias) names.kvABias = `${a}.kv_a_proj_with_mqa.bias`
  names.kvANorm = `${a}.kv_a_layernorm.weight`
  names.kvB = `${a}.kv_b_proj.weight`
  return names
}

/** Every tensor the model needs, with its expected shape. */
export function expectedShapes(spec: ModelSpec): Map<string, number[]> {
  const names = tensorNames(spec)
  const d = spec.hiddenSize
  const qDim = spec.numHeads * spec.headDim
  const kvDim = spec.numKvHeads * spec.headDim
  const out = new Map<string, number[]>()
  out.set(names.embed, [spec.vocabSize, d])
  out.set(names.finalNorm, [d])
  out.set(names.lmHead, [spec.vocabSize, d])
  const ffn = (e: ExpertNames, f: number) => {
    out.set(e.gate, [f, d])
    out.set(e.up, [f, d])
    out.set(e.down, [d, f])
  }
  spec.layers.forEach((layer, i) => {
    const n = names.layers[i]
    out.set(n.inputNorm, [d])
    out.set(n.postNorm, [d])
    if (n.mla) {
      const m = spec.mla!, H = spec.numHeads
      const qk = m.qkNopeHeadDim + m.qkRopeHeadDim
      if (n.mla.qProj) out.set(n.mla.qProj, [H * qk, d])
      if (n.mla.qA) {
        out.set(n.mla.qA, [m.qLoraRank!, d])
        out.set(n.mla.qANorm!, [m.qLoraRank!])
        out.set(n.mla.qB!, [H * qk, m.qLoraRank!])
      }
      if (n.mla.qABias) out.set(n.mla.qABias, [m.qLoraRank!])
      out.set(n.mla.kvA, [m.kvLoraRank + m.qkRopeHeadDim, d])
      if (n.mla.kvABias) out.set(n.mla.kvABias, [m.kvLoraRank + m.qkRopeHeadDim])
      out.set(n.mla.kvANorm, [m.kvLoraRank])
      out.set(n.mla.kvB, [H * (m.qkNopeHeadDim + m.vHeadDim), m.kvLoraRank])
      out.set(n.o, [d, H * m.vHeadDim])
    } else {
      out.set(n.q!, [qDim, d])
      out.set(n.k!, [kvDim, d])
      out.set(n.v!, [kvDim, d])
      out.set(n.o, [d, qDim])
    }
    if (n.qBias) { out.set(n.qBias, [qDim]); out.set(n.kBias!, [kvDim]); out.set(n.vBias!, [kvDim]) }
    if (n.oBias) out.set(n.oBias, [d])
    if (n.qNorm) {
      out.set(n.qNorm, [spec.qkNorm === 'full' ? qDim : spec.headDim])
      out.set(n.kNorm!, [spec.qkNorm === 'full' ? kvDim : spec.headDim])
    }
    if (layer.kind === 'dense') { ffn(n.denseMlp!, layer.ffn); return }
    const moe = layer as MoeLayerSpec
    out.set(n.router!, [moe.numExperts, d])
    if (n.correctionBias) out.set(n.correctionBias, [moe.numExperts])
    for (const e of n.experts!) ffn(e, moe.expertFfn)
    if (n.sharedExpert) {
      ffn(n.sharedExpert, moe.sharedExpertFfn)
      if (n.sharedExpertGate) out.set(n.sharedExpertGate, [1, d])
    }
  })
  return out
}
