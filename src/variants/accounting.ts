// What a variant costs: stored parameters and bytes, non-zero weights, and parameters active per
// token, derived from the edits themselves (never from what a method claims).
import type { StatsData } from '../calibration/stats.ts'
import { neuronsKept, type VariantEdits } from '../edits/variantEdits.ts'
import { overrideZeros } from '../edits/overrideTensor.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { DTYPE_BYTES } from '../model/safetensors.ts'

export interface LayerSummary {
  layer: number
  experts: number
  /** Expert slots whose own weights are computed (not removed, not novice, not bound elsewhere). */
  kept: number[]
  removed: number[]
  novices: number[]
  /** Merge groups (source slot first) where slots share weights. */
  groups: number[][]
  neuronKeep?: number
  skipSecondBeta?: number
}

export interface VariantAccounting {
  /** Parameters the variant stores (bound slots counted once, novices as d values). */
  totalParams: number
  /** ... of which routed-expert parameters. */
  expertParams: number
  /** The unpruned model's routed-expert parameters. */
  baseExpertParams: number
  baseTotalParams: number
  /** Stored parameters that are non-zero (unstructured sparsity saves nothing unless stored sparsely). */
  nonzeroParams: number
  memoryBytes: number
  /** Parameters used per token: attention, routers, head, and the experts a token actually computes. */
  activeParamsPerToken: number
  baseActiveParamsPerToken: number
  layers: LayerSummary[]
}

export function summarizeLayers(ckpt: Checkpoint, edits: VariantEdits): LayerSummary[] {
  return ckpt.spec.layers.filter(l => l.kind === 'moe').map(l => {
    const layer = l as Extract<typeof l, { kind: 'moe' }>
    const h = edits.layers[layer.index] ?? {}
    const removed = [...(h.disabled ?? [])].sort((a, b) => a - b)
    const novices = Object.keys(h.novices ?? {}).map(Number).sort((a, b) => a - b)
    const bySource = new Map<number, number[]>()
    for (let e = 0; e < layer.numExperts; e++) {
      if (removed.includes(e) || novices.includes(e)) continue
      const src = h.bindings?.[e] ?? e
      bySource.set(src, [...(bySource.get(src) ?? []), e])
    }
    const groups = [...bySource.entries()].filter(([, m]) => m.length > 1).map(([src, m]) => [src, ...m.filter(x => x !== src)])
    return {
      layer: layer.index, experts: layer.numExperts, kept: [...bySource.keys()].sort((a, b) => a - b), removed, novices, groups,
      ...(h.neuronKeep !== undefined ? { neuronKeep: h.neuronKeep } : {}),
      ...(h.skipSecondBeta !== undefined ? { skipSecondBeta: h.skipSecondBeta } : {}),
    }
  })
}

export function accountVariant(ckpt: Checkpoint, edits: VariantEdits, stats?: StatsData): VariantAccounting {
  const spec = ckpt.spec
  const d = spec.hiddenSize
  const numel = (name: string) => (ckpt.tensors.get(name)?.shape ?? []).reduce((a, b) => a * b, 1)
  const layers = summarizeLayers(ckpt, edits)
  const bytesPer = DTYPE_BYTES[ckpt.tensors.get(ckpt.names.embed)!.dtype]
  let shared = numel(ckpt.names.embed) + numel(ckpt.names.finalNorm) + (spec.tieWordEmbeddings ? 0 : numel(ckpt.names.lmHead))
  let activeShared = numel(ckpt.names.finalNorm) + numel(ckpt.names.lmHead) + d // one embedding row
  let expertParams = 0, baseExpert = 0, active = 0, baseActive = 0
  spec.layers.forEach((layer, i) => {
    const n = ckpt.names.layers[i]
    const fixed = [n.inputNorm, n.postNorm, n.q, n.k, n.v, n.o, n.qBias, n.kBias, n.vBias, n.oBias, n.qNorm, n.kNorm, n.router, n.sharedExpertGate, n.correctionBias, ...Object.values(n.mla ?? {})]
      .filter((x): x is string => Boolean(x)).reduce((s, name) => s + numel(name), 0)
    const sharedMlp = n.sharedExpert ? numel(n.sharedExpert.gate) * 3 : n.denseMlp ? numel(n.denseMlp.gate) * 3 : 0
    shared += fixed + sharedMlp
    activeShared += fixed + sharedMlp
    if (layer.kind !== 'moe') return
    const s = layers.find(x => x.layer === layer.index)!
    const perExpert = 3 * d * layer.expertFfn
    baseExpert += layer.numExperts * perExpert
    expertParams += s.kept.length * perExpert + s.novices.length * d
    baseActive += layer.topK * perExpert
    // Expected computed experts per token: the top-k minus novice slots (by routed mass) and skipped seconds.
    let computed = edits.layers[layer.index]?.topK ?? layer.topK // HC-SMoE may lower top-k
    const routing = stats?.routing?.[layer.index]
    if (routing && routing.tokens > 0) {
      const novMass = s.novices.reduce((a, e) => a + routing.count[e], 0) / routing.tokens
      computed -= novMass
      if (s.skipSecondBeta !== undefined) {
        const skipped = Array.from(routing.top2Ratios).filter(r => r < s.skipSecondBeta!).length / Math.max(1, routing.top2Ratios.length)
        computed -= skipped
      }
    }
    // Neuron top-k computes the gate projection in full and up/down for the ceil(rho F) kept neurons only.
    const perToken = s.neuronKeep !== undefined ? d * (layer.expertFfn + 2 * neuronsKept(s.neuronKeep, layer.expertFfn)) : perExpert
    active += computed * perToken
  })
  let zeros = 0
  for (const data of Object.values(edits.overrides)) zeros += overrideZeros(data)
  const totalParams = shared + expertParams
  return {
    totalParams, expertParams, baseExpertParams: baseExpert, baseTotalParams: shared + baseExpert,
    nonzeroParams: totalParams - zeros, memoryBytes: totalParams * bytesPer,
    activeParamsPerToken: activeShared + active, baseActiveParamsPerToken: activeShared + baseActive, layers,
  }
}
