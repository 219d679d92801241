// The method plugin contract. A method is one file in methods/ whose default export is made by
// defineMethod({...}). The harness owns everything around `apply` / `applyLayer`: parameter
// validation, fail-fast feasibility checks, calibration (one pass of the unpruned model, or
// sequential layer by layer; cached), building and scoring the variant, and accounting (memory,
// active parameters).
import type { CalibrationStats, StatNeed } from '../calibration/stats.ts'
import type { MoeLayerSpec } from '../model/modelSpec.ts'
import type { ModelNames } from '../model/tensorNames.ts'

// ---------------------------------------------------------------------------------- parameters

export interface NumberParam { type: 'number'; default: number; min?: number; max?: number; description: string }
export interface IntegerParam { type: 'integer'; default: number; min?: number; max?: number; description: string }
export interface BooleanParam { type: 'boolean'; default: boolean; description: string }
export interface EnumParam<V extends string = string> { type: 'enum'; default: V; values: readonly V[]; description: string }
export type ParamSpec = NumberParam | IntegerParam | BooleanParam | EnumParam

export type ParamShape = Record<string, ParamSpec>

export type ParamValues<P extends ParamShape> = {
  [K in keyof P]: P[K] extends BooleanParam ? boolean : P[K] extends EnumParam<infer V> ? V : number
}

/** Parameter builders. Every method has `ratio`, the shared sweep axis in [0, 1). */
export const p = {
  ratio: (o: { default?: number; description?: string } = {}): NumberParam => ({
    type: 'number', default: o.default ?? 0.25, min: 0, max: 0.999999,
    description: o.description ?? 'the shared sweep axis; what it removes depends on the method family',
  }),
  number: (o: { default: number; min?: number; max?: number; description: string }): NumberParam => ({ type: 'number', ...o }),
  integer: (o: { default: number; min?: number; max?: number; description: string }): IntegerParam => ({ type: 'integer', ...o }),
  boolean: (o: { default: boolean; description: string }): BooleanParam => ({ type: 'boolean', ...o }),
  enum: <const V extends string>(values: readonly V[], o: { default: NoInfer<V>; description: string }): EnumParam<V> => ({ type: 'enum', values, ...o }),
}

// ---------------------------------------------------------------------------------- context

/** The MoE layers of the model (dense layers are never touched by expert methods). */
export interface MoeLayout {
  family: string
  hiddenSize: number
  layers: readonly MoeLayerSpec[]
  names: ModelNames
}

export interface WeightStore {
  /** Current value of a tensor as float32 (a copy; includes earlier edits of this method). */
  get(name: string): Float32Array
  /** Replaces a tensor (same number of elements); stored rounded to the checkpoint's dtype. */
  set(name: string, data: Float32Array): void
  shape(name: string): readonly number[]
}

export interface ExpertControls {
  /** Physical-removal semantics: excluded before top-k; survivors renormalise as the family does. */
  remove(layer: number, expert: number): void
  /** The slot computes with `source`'s weights (merging, router untouched, summed gates). */
  bind(layer: number, slot: number, source: number): void
  /** The slot outputs a constant vector (MoNE novice; router untouched, gate-weighted). */
  setNovice(layer: number, expert: number, vector: Float32Array): void
  removed(layer: number): readonly number[]
}

export interface RuntimeKnobs {
  /** Per-token neuron top-k: keep the ceil(rho·F) neurons with the largest |act(W_gate x)|. */
  neuronTopK(layer: number, rho: number): void
  /** NAEE dynamic skipping: drop the second expert when w2 / w1 < beta (top-2 layers). */
  skipSecondExpert(layer: number, beta: number): void
  /** Routing top-k of the layer (HC-SMoE: top_k := num_groups when fewer groups than top-k remain). */
  setTopK(layer: number, k: number): void
}

export interface MethodLogger {
  /** A counted warning, stored with the run and shown in the report. */
  warn(message: string): void
  info(message: string): void
}

export interface MethodContext<V> {
  readonly params: Readonly<V>
  readonly layout: MoeLayout
  readonly weights: WeightStore
  readonly experts: ExpertControls
  readonly runtime: RuntimeKnobs
  /**
   * Only the statistics the method declared in `needs`. One-pass calibration: computed on the unpruned
   * model. Sequential calibration: layer L's entry was computed with the edits of the layers before L
   * already applied (and only the layers up to the current one have entries).
   */
  readonly stats: CalibrationStats
  /**
   * The statistics declared in `unprunedNeeds`, always from one pass of the unpruned model (NAEE's
   * progressive mode compares against the unpruned layer outputs). With one-pass calibration it reads
   * the same data as `stats`.
   */
  readonly unpruned: CalibrationStats
  /** Seeded from the variant key less the method's code hash (identity/keys.ts methodSeedKey): the only randomness a method may use. */
  readonly rng: () => number
  readonly log: MethodLogger
}

/** What the method achieved, measured rather than requested. */
export interface MethodReport {
  /** The achieved value of `ratio` in the method's own unit (e.g. share of routed experts removed). */
  achievedRatio: number
  /** Free-form facts for the report, e.g. the merge groups or the scores that ranked the experts. */
  notes?: Record<string, unknown>
}

/** What `applyLayer` achieved in one layer, in the method's own unit. */
export interface LayerReport {
  /** Units removed in this layer (experts removed, weights zeroed, ...). */
  removed: number
  /** Units the ratio is measured against in this layer; achievedRatio = Σ removed / Σ total. */
  total: number
  /** Per-layer facts; the harness collects each key into an array over layers for MethodReport.notes. */
  notes?: Record<string, unknown>
}

/**
 * How calibration statistics are collected (methods.md §3, "single pass vs sequential").
 * - 'one-pass': every layer's statistics from one pass of the unpruned model.
 * - 'sequential': layer by layer; layer L's statistics are collected on the model whose MoE layers
 *   before L already carry the method's edits (Wanda's `prune_wanda`, NAEE's `progressive_pruning`).
 *   The engine keeps the hidden states entering each layer and runs one layer at a time on them, so
 *   the cost stays about one forward pass (src/calibration/sequential.ts). Statistics are cached per
 *   layer, keyed by (model, data, settings, needs, the edits of the earlier layers). The procedure is
 *   recorded with the variant (calibration_json) and shown on the report's method page.
 */
export type CalibrationProcedure = 'one-pass' | 'sequential'

/** The families the leaderboard groups methods by (what "ratio" means differs per family; methods.md §5). */
export const METHOD_FAMILIES = ['expert-pruning', 'expert-merging', 'novice-replacement', 'unstructured', 'neuron-sparsity', 'dynamic-skipping'] as const
export type MethodFamily = typeof METHOD_FAMILIES[number]

export interface MethodDefinition<P extends ParamShape = ParamShape> {
  /** kebab-case id, equal to the file name (methods/<name>.ts). */
  name: string
  /** One or two sentences for `moe-harness methods` and the method's report page. */
  description: string
  /** Family shown next to every ratio (what "ratio" means differs per family). */
  family: MethodFamily
  /** Typed, JSON-serialisable knobs with defaults; `ratio` is required. */
  params: P
  /** Calibration statistics the method reads; may depend on the parameters. */
  needs?: readonly StatNeed[] | ((params: ParamValues<P>) => readonly StatNeed[])
  /**
   * The calibration procedure (default 'one-pass'). 'sequential' needs `applyLayer`. Methods that
   * offer both usually expose a `calibration` parameter and return it here.
   */
  calibration?: CalibrationProcedure | ((params: ParamValues<P>) => CalibrationProcedure)
  /** Statistics read from one pass of the unpruned model (ctx.unpruned) in addition to `needs`. */
  unprunedNeeds?: readonly StatNeed[] | ((params: ParamValues<P>) => readonly StatNeed[])
  /** Fail-fast feasibility check, run before any calibration. Throw with a message naming the fix. */
  validate?: (params: ParamValues<P>, layout: MoeLayout) => void
  /**
   * The whole-model phase: edit weights and/or set hooks. Deterministic given params, stats and
   * ctx.rng. One-pass calibration only. Define exactly one of `apply` and `applyLayer`. Both run in a
   * worker thread (src/methods/applyInWorker.ts): module-level state is not shared with `validate` / `needs`.
   */
  apply?: (ctx: MethodContext<ParamValues<P>>) => MethodReport | Promise<MethodReport>
  /**
   * The per-layer phase: edit ONE MoE layer (its experts, hooks, and the tensors of that layer only;
   * the harness rejects edits elsewhere). The harness calls it for every MoE layer in ascending order.
   * With one-pass calibration ctx.stats holds every layer of the unpruned model; with sequential
   * calibration ctx.stats holds `layer`'s statistics collected with the edits of the earlier layers
   * applied. Either way the result is the same function of the statistics each call sees, so one
   * implementation serves both procedures. A layer's edits are final when its call returns (the
   * next layers' statistics are collected on them). achievedRatio = Σ removed / Σ total over layers.
   */
  applyLayer?: (ctx: MethodContext<ParamValues<P>>, layer: MoeLayerSpec) => LayerReport | Promise<LayerReport>
  /** Paper and code the implementation follows. */
  reference?: { paper?: string; code?: string }
}

/** Identity helper that gives method files their types. */
export function defineMethod<P extends ParamShape>(method: MethodDefinition<P>): MethodDefinition<P> {
  return method
}
