// The tensor names and shapes of the published Hub checkpoints, per family. Shapes are HF's
// nn.Linear layout [out_features, in_features].
import type { ModelSpec, MoeLayerSpec } from './modelSpec.ts'

export interface ExpertNames { gate: string; up: string; down: string }

export interface LayerNames {
  inputNorm: string
  postNorm: string
  q: string; k: string; v: string; o: string
  qBias?: string; kBias?: string; vBias?: string; oBias?: string
  qNorm?: string; kNorm?: string
  router?: string
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
    const names: LayerNames = {
      inputNorm: `${p}.input_layernorm.weight`,
      postNorm: `${p}.post_attention_layernorm.weight`,
      q: `${p}.self_attn.q_proj.weight`,
      k: `${p}.self_attn.k_proj.weight`,
      v: `${p}.self_attn.v_proj.weight`,
      o: `${p}.self_attn.o_proj.weight`,
    }
    if (spec.qkvBias) {
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
      names.router = `${p}.mlp.gate.weight`
      names.experts = Array.from({ length: layer.numExperts }, (_, j) => ({
        gate: `${p}.mlp.experts.${j}.gate_proj.weight`,
        up: `${p}.mlp.experts.${j}.up_proj.weight`,
        down: `${p}.mlp.experts.${j}.down_proj.weight`,
      }))
      if (layer.sharedExpertFfn > 0) {
        names.sharedExpert = {
          gate: `${p}.mlp.shared_expert.gate_proj.weight`,
          up: `${p}.mlp.shared_expert.up_proj.weight`,
          down: `${p}.mlp.shared_expert.down_proj.weight`,
        }
        names.sharedExpertGate = `${p}.mlp.shared_expert_gate.weight`
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
    out.set(n.q, [qDim, d])
    out.set(n.k, [kvDim, d])
    out.set(n.v, [kvDim, d])
    out.set(n.o, [d, qDim])
    if (n.qBias) { out.set(n.qBias, [qDim]); out.set(n.kBias!, [kvDim]); out.set(n.vBias!, [kvDim]) }
    if (n.oBias) out.set(n.oBias, [d])
    if (n.qNorm) {
      out.set(n.qNorm, [spec.qkNorm === 'full' ? qDim : spec.headDim])
      out.set(n.kNorm!, [spec.qkNorm === 'full' ? kvDim : spec.headDim])
    }
    if (layer.kind === 'dense') { ffn(n.denseMlp!, layer.ffn); return }
    const moe = layer as MoeLayerSpec
    out.set(n.router!, [moe.numExperts, d])
    for (const e of n.experts!) ffn(e, moe.expertFfn)
    if (n.sharedExpert) {
      ffn(n.sharedExpert, moe.sharedExpertFfn)
      out.set(n.sharedExpertGate!, [1, d])
    }
  })
  return out
}
