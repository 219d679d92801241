// Calibration statistics, per MoE layer, from one pass of the unpruned model or, for sequential
// methods, layer by layer on the partially edited model (methods.md §3).
// Token scopes matter: "routed" means the tokens whose top-k selects the expert; "all" means every
// token reaching the layer; "forced" means the expert is run on every token.

export type StatNeed =
  /** Router statistics: counts, gate sums in every convention, softmax mass, logit Gram matrix, top-2 ratios. */
  | 'routing'
  /** Per-expert output moments over routed tokens (pre-gate): sums, squares, norms, gate-weighted norms, max |y|. */
  | 'expertOutputs'
  /** Per-expert mean output with the expert forced on every token (HC-SMoE). */
  | 'expertOutputsAll'
  /** Σ x_j² of the inputs reaching each expert linear (gate/up: MoE input rows; down: act ⊙ up), plain and gate-weighted. */
  | 'inputNorms'
  /** A token sample per layer (inputs, router logits, forced outputs of every expert) for subset enumeration (NAEE). */
  | 'layerSamples'
  /**
   * The MoE layer's routed output Z on the 'layerSamples' tokens, with the model's own routing and the
   * family's gates (NAEE progressive's target from the unpruned model). One plain pass: no expert is
   * forced on every token.
   */
  | 'layerTargets'

export const ALL_NEEDS: readonly StatNeed[] = ['routing', 'expertOutputs', 'expertOutputsAll', 'inputNorms', 'layerSamples', 'layerTargets']

export interface LayerRouting {
  /** Valid tokens that reached the layer. */
  tokens: number
  /** ν_e: tokens whose top-k contains e. */
  count: Float64Array
  /** Σ over routed tokens of the gate the model uses (renormalised over the top-k iff norm_topk_prob). */
  gateSum: Float64Array
  /** Σ over routed tokens of the gate renormalised over the token's top-k (REAP default, NAEE). */
  gateSumRenorm: Float64Array
  /** Σ over routed tokens of the raw softmax probability (no renormalisation). */
  gateSumRaw: Float64Array
  /** Σ over all tokens of the full softmax probability (HC-SMoE "routing-score", S-prune). */
  softmaxSum: Float64Array
  /** E×E Gram matrix of router-logit columns, Σ_x z_i(x) z_j(x) (M-SMoE similarity). */
  logitGram: Float64Array
  /** w(2)/w(1) per token, the ratio of the 2nd to the largest softmax probability (NAEE skipping). */
  top2Ratios: Float32Array
}

export interface LayerExpertOutputs {
  /** Per expert, Σ over routed tokens of E_e(x) (row-major [E, d]). */
  sum: Float64Array
  /** Per expert, Σ over routed tokens of E_e(x)² per dimension ([E, d]). */
  sumSq: Float64Array
  /** Σ ‖E_e(x)‖₂ over routed tokens (EAN). */
  normSum: Float64Array
  /** Σ g_renorm(x) · ‖E_e(x)‖₂ over routed tokens (REAP, renormalised gates). */
  gateNormSum: Float64Array
  /** Σ g_model(x) · ‖E_e(x)‖₂ over routed tokens (REAP with the model's own gates). */
  gateNormSumModel: Float64Array
  /** max |E_e(x)_j| over routed tokens and dimensions (massive activations: super experts). */
  maxAbs: Float64Array
}

export interface LayerInputNorms {
  /** Σ x_j² over routed tokens of the input of gate/up ([E, d]). */
  gateUp: Float64Array
  /** Σ h_j² over routed tokens of the input of down, h = act(W_gate x) ⊙ W_up x ([E, F]). */
  down: Float64Array
  /** Σ (g_e(x) x_j)² with the model's gate (MoE-Pruner) ([E, d]). */
  gateUpWeighted: Float64Array
  /** Σ (g_e(x) h_j)² ([E, F]). */
  downWeighted: Float64Array
}

export interface LayerSamples {
  tokens: number
  /** MoE inputs [n, d]. */
  inputs: Float32Array
  /** Router logits [n, E]. */
  routerLogits: Float32Array
  /** Every expert forced on every sampled token, [E, n, d]. */
  expertOutputs: Float32Array
}

export interface LayerTargets {
  /** The first `tokens` calibration tokens, as in LayerSamples. */
  tokens: number
  /** Σ over the token's routed experts of g_e(x)·E_e(x) (gates renormalised over the top-k iff norm_topk_prob), [n, d], float64. */
  outputs: Float64Array
}

export interface CalibrationStats {
  /** What was computed and on which data. */
  readonly info: {
    key: string; needs: StatNeed[]; sequences: number; length: number; tokens: number; source: string; seconds: number
    /** 'sequential': each layer's entry was collected with the method's edits of the earlier layers applied. Absent = one-pass. */
    procedure?: 'one-pass' | 'sequential'
    /** Sequential only: layers whose statistics came from the cache. */
    layersFromCache?: number
  }
  routing(layer: number): LayerRouting
  expertOutputs(layer: number): LayerExpertOutputs
  /** Mean output of each expert over all tokens ([E, d]). */
  expertOutputsAll(layer: number): Float64Array
  inputNorms(layer: number): LayerInputNorms
  layerSamples(layer: number): LayerSamples
  layerTargets(layer: number): LayerTargets
}

/** Serializable payload behind CalibrationStats. */
export interface StatsData {
  info: CalibrationStats['info']
  routing?: Record<number, LayerRouting>
  expertOutputs?: Record<number, LayerExpertOutputs>
  expertOutputsAll?: Record<number, Float64Array>
  inputNorms?: Record<number, LayerInputNorms>
  layerSamples?: Record<number, LayerSamples>
  layerTargets?: Record<number, LayerTargets>
}

/** Wraps the data; reading a statistic that was not declared is a clear error for the plugin author. */
export function statsView(data: StatsData, allowed: readonly StatNeed[]): CalibrationStats {
  const get = <T>(need: StatNeed, table: Record<number, T> | undefined, layer: number): T => {
    if (!allowed.includes(need)) throw new Error(`statistic '${need}' was not declared in the method's needs; add it to needs: [...]`)
    const v = table?.[layer]
    if (v === undefined) throw new Error(`statistic '${need}' has no entry for layer ${layer}`)
    return v
  }
  return {
    info: data.info,
    routing: l => get('routing', data.routing, l),
    expertOutputs: l => get('expertOutputs', data.expertOutputs, l),
    expertOutputsAll: l => get('expertOutputsAll', data.expertOutputsAll, l),
    inputNorms: l => get('inputNorms', data.inputNorms, l),
    layerSamples: l => get('layerSamples', data.layerSamples, l),
    layerTargets: l => get('layerTargets', data.layerTargets, l),
  }
}

export function median(values: ArrayLike<number>): number {
  const sorted = Float64Array.from(values).sort()
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
