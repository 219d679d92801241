// Calibration statistics, per MoE layer, from one pass of the unpruned model or, for sequential
// methods, layer by layer on the partially edited model (methods.md §3).
// Token scopes matter: "routed" means the tokens whose top-k selects the expert; "all" means every
// token reaching the layer; "forced" means the expert is run on every token.

import { fail } from '../errors.ts'
import { closest } from '../util/suggest.ts'

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

/** The fields of each statistic's layer object (and of info), in declaration order: what a misspelt read is matched against. */
const FIELDS = {
  info: ['key', 'needs', 'sequences', 'length', 'tokens', 'source', 'seconds', 'procedure', 'layersFromCache'],
  routing: ['tokens', 'count', 'gateSum', 'gateSumRenorm', 'gateSumRaw', 'softmaxSum', 'logitGram', 'top2Ratios'],
  expertOutputs: ['sum', 'sumSq', 'normSum', 'gateNormSum', 'gateNormSumModel', 'maxAbs'],
  inputNorms: ['gateUp', 'down', 'gateUpWeighted', 'downWeighted'],
  layerSamples: ['tokens', 'inputs', 'routerLogits', 'expertOutputs'],
  layerTargets: ['tokens', 'outputs'],
} as const satisfies Record<Exclude<StatNeed, 'expertOutputsAll'> | 'info', readonly string[]>

/** Who reads the view, for its errors: the method's name, the decoder layers' kinds, and `stats` or `unpruned`. */
export interface StatsReader {
  method?: string
  /** Every decoder layer in order (ckpt.spec.layers): a dense layer has no statistics. */
  layers?: readonly { index: number; kind: 'dense' | 'moe' }[]
  /** The context property the plugin reads: 'stats' (default) or 'unpruned'. */
  name?: string
}

type Kind = keyof typeof FIELDS

/**
 * The prototype of a view's statistic objects of one kind: a Proxy that answers only the reads that
 * miss an object's own fields, and throws for a name the kind does not have. `read(receiver)` names
 * the object (`stats.routing(1)`); it runs only on that error path.
 * Errors: INVALID_ARGUMENT naming the read, the closest field and the list (the same treatment as
 * undeclared `params.x`, src/methods/registry.ts strictParams).
 */
function fieldGuard(kind: Kind, read: (receiver: object) => string, method?: string): object {
  return new Proxy({}, {
    get(base, key, receiver) {
      if (typeof key !== 'string' || key in base || (FIELDS[kind] as readonly string[]).includes(key) || key === 'toJSON' || key === 'then') return Reflect.get(base, key, receiver)
      const fields = [...new Set([...FIELDS[kind], ...Object.keys(receiver as object)])]
      const near = closest(key, fields, 1)
      return fail('INVALID_ARGUMENT', `${read(receiver as object)}.${key}: ${method ? `method '${method}' read` : 'read'} '${key}', which ${kind} statistics do not have${near.length ? ` (did you mean ${near[0]}?)` : ''}; their fields: ${fields.join(', ')}`)
    },
  })
}

/**
 * A statistic object whose unknown fields throw: `stats.routing(l).counts` (the field is `count`) was
 * undefined, and the error came later, far from the cause (a helper's "got undefined", NaN scores).
 * A shallow copy (the same typed arrays, never wrapped: methods read them per expert and per
 * dimension) whose prototype is the kind's guard: the real fields are own properties, read at
 * plain-object speed; only a read that misses them reaches the Proxy. Symbols, Object.prototype
 * names, toJSON and then read as usual, so spreading, JSON, inspection and `await` work; `in` and
 * Object.keys see the real fields.
 */
function strictFields<T extends object>(target: T, guard: object): T {
  return Object.setPrototypeOf({ ...target }, guard) as T
}

/**
 * Wraps the data; reading a statistic that was not declared, a layer without statistics (a dense
 * layer, a position used as an index) or a field that does not exist is INVALID_ARGUMENT naming the
 * read (`stats.routing(0)`), the method and the fix. Layer objects are wrapped once per view and layer.
 */
export function statsView(data: StatsData, allowed: readonly StatNeed[], reader: StatsReader = {}): CalibrationStats {
  const name = reader.name ?? 'stats'
  const moe = reader.layers?.filter(l => l.kind === 'moe').map(l => l.index)
  const wrapped = new WeakMap<object, object>()
  const guards = new Map<Kind, object>()
  // Which layer's entry `receiver` copies (its fields are the entry's own values): only for an error message.
  const layerOf = (table: Record<number, object> | undefined, receiver: object) =>
    Object.entries(table ?? {}).find(([, e]) => Object.keys(e).every(k => (e as Record<string, unknown>)[k] === (receiver as Record<string, unknown>)[k]))?.[0] ?? '?'
  const get = <T>(need: StatNeed, table: Record<number, T> | undefined, layer: number): T => {
    const read = `${name}.${need}(${String(layer)})`
    if (!allowed.includes(need)) {
      fail('INVALID_ARGUMENT', `${read}: ${reader.method ? `method '${reader.method}'` : 'the method'} did not declare '${need}' in its ${name === 'unpruned' ? 'unprunedNeeds' : 'needs'} (it declares ${allowed.join(', ') || 'none'}); add it to ${name === 'unpruned' ? 'unprunedNeeds' : 'needs'}: [...]`)
    }
    const v = table?.[layer]
    if (v === undefined) fail('INVALID_ARGUMENT', `${read}: ${missingLayer(data, table, need, layer, reader.layers, moe)}`)
    if (need === 'expertOutputsAll' || typeof v !== 'object' || v === null) return v
    let w = wrapped.get(v)
    if (!w) {
      let guard = guards.get(need as Kind)
      if (!guard) guards.set(need as Kind, (guard = fieldGuard(need as Kind, r => `${name}.${need}(${layerOf(table as Record<number, object>, r)})`, reader.method)))
      wrapped.set(v, (w = strictFields(v, guard)))
    }
    return w as T
  }
  // data.info may be replaced while the view lives (the sequential worker assigns each layer's info).
  let info: { of: StatsData['info']; wrapped: StatsData['info'] } | undefined
  return {
    get info() {
      if (info?.of !== data.info) info = { of: data.info, wrapped: strictFields(data.info, fieldGuard('info', () => `${name}.info`, reader.method)) }
      return info.wrapped
    },
    routing: l => get('routing', data.routing, l),
    expertOutputs: l => get('expertOutputs', data.expertOutputs, l),
    expertOutputsAll: l => get('expertOutputsAll', data.expertOutputsAll, l),
    inputNorms: l => get('inputNorms', data.inputNorms, l),
    layerSamples: l => get('layerSamples', data.layerSamples, l),
    layerTargets: l => get('layerTargets', data.layerTargets, l),
  }
}

/** Why `layer` has no entry: a dense layer, no such layer, a position for an index, or (sequential) not collected yet. */
function missingLayer(data: StatsData, table: Record<number, unknown> | undefined, need: StatNeed, layer: number, layers: StatsReader['layers'], moe: number[] | undefined): string {
  const fix = `pass a layer's index (layout.layers[i].index), not its position`
  const spec = layers?.find(l => l.index === layer)
  if (spec?.kind === 'dense') return `layer ${layer} is a dense layer (no experts, so no ${need} statistics); the MoE layers are ${moe!.join(', ')}: ${fix}`
  if (layers && !spec) return `the model has no layer ${String(layer)} (decoder layers 0..${layers.length - 1}; MoE layers ${moe!.join(', ')}); ${fix}`
  const have = Object.keys(table ?? {})
  const sequential = data.info.procedure === 'sequential' ? '; in sequential calibration a layer\'s statistics exist once the layers before it are applied: applyLayer reads its own layer' : ''
  return `statistic '${need}' has no entry for layer ${String(layer)} (entries for layers: ${have.join(', ') || 'none'})${sequential}`
}

export function median(values: ArrayLike<number>): number {
  const sorted = Float64Array.from(values).sort()
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
