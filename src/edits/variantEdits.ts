// The variant-edit model, its one owner: the per-MoE-layer hooks every sparsification method is built
// from plus replaced tensors (type, merge, validate, neurons kept, content hash). Semantics follow
// ../shared/docs/methods.md §4: removal masks the router before top-k; binding, novices and
// neuron top-k keep the router untouched. On disk: src/edits/variantFolder.ts (a prepared variant)
// and src/variants/export.ts (checkpoints for other tools).
import { fail } from '../errors.ts'
import type { ModelSpec, MoeLayerSpec } from '../model/modelSpec.ts'
import { editsContentHash } from '../identity/keys.ts'
import { isStoredOverride, overrideDigest, type OverrideTensor } from './overrideTensor.ts'

export interface LayerHooks {
  /**
   * Experts removed with physical-removal semantics: excluded before the softmax's top-k, so the
   * survivors' probabilities renormalise exactly as if the router rows had been sliced away.
   */
  disabled?: number[]
  /** slot → source slot: the slot computes with the source slot's weights (expert merging; router kept). */
  bindings?: Record<number, number>
  /** slot → constant output vector of length hidden_size (MoNE novice; router kept, gate multiplies it). */
  novices?: Record<number, Float32Array>
  /**
   * Neuron top-k (Mixture of Neuron Experts): fraction rho of the intermediate neurons kept per token in
   * every routed expert, chosen by the largest |act(W_gate x)|; the rest are zeroed, no rescaling.
   */
  neuronKeep?: number
  /**
   * NAEE dynamic skipping (top-2 layers): a token drops its second expert when w2 / w1 < beta; the
   * remaining expert then carries the whole gate (weights renormalised over the kept experts).
   */
  skipSecondBeta?: number
  /**
   * Routing top-k of this layer, overriding the config's num_experts_per_tok (1 ≤ topK ≤ experts left).
   * HC-SMoE sets top_k := num_groups when fewer merge groups than top-k remain (official code,
   * wazenmai/HC-SMoE hcsmoe/merging-mixtral.py); the exported config carries it too.
   */
  topK?: number
}

/** Everything that distinguishes a variant from the base checkpoint. */
export interface VariantEdits {
  /** Hooks by layer index (only MoE layers). */
  layers: Record<number, LayerHooks>
  /**
   * Replacement tensors (same number of values as the checkpoint tensor), already rounded to its
   * stored dtype: float32 in memory, or stored in a safetensors file (overrideTensor.ts).
   */
  overrides: Record<string, OverrideTensor>
}

export function emptyEdits(): VariantEdits {
  return { layers: {}, overrides: {} }
}

/**
 * `extra` layered on top of `base` (disabled sets are united; other hooks of `extra` win). A slot
 * `extra` removes is removed: a novice or binding `base` gave that slot no longer applies (a method run
 * on a harness-format variant whose novices it removed was "both disabled and a novice").
 */
export function mergeEdits(base: VariantEdits, extra: VariantEdits): VariantEdits {
  const layers = { ...base.layers }
  for (const [l, h] of Object.entries(extra.layers)) {
    const cur = layers[Number(l)] ?? {}
    const disabled = [...new Set([...(cur.disabled ?? []), ...(h.disabled ?? [])])].sort((a, b) => a - b)
    const removed = new Set(h.disabled ?? [])
    const kept = <T>(slots: Record<number, T> | undefined): Record<number, T> =>
      Object.fromEntries(Object.entries(slots ?? {}).filter(([slot]) => !removed.has(Number(slot))))
    const bindings = { ...kept(cur.bindings), ...h.bindings }
    const novices = { ...kept(cur.novices), ...h.novices }
    const merged: LayerHooks = { ...cur, ...h }
    delete merged.bindings
    delete merged.novices
    layers[Number(l)] = {
      ...merged,
      ...(disabled.length ? { disabled } : {}),
      ...(Object.keys(bindings).length ? { bindings } : {}),
      ...(Object.keys(novices).length ? { novices } : {}),
    }
  }
  return { overrides: { ...base.overrides, ...extra.overrides }, layers }
}

export function isEmptyEdits(edits: VariantEdits): boolean {
  return Object.keys(edits.overrides).length === 0 && Object.values(edits.layers).every(h => Object.keys(h).length === 0)
}

/** Checks every hook against the architecture before anything expensive happens. */
export function validateEdits(spec: ModelSpec, edits: VariantEdits): void {
  for (const [key, hooks] of Object.entries(edits.layers)) {
    const index = Number(key)
    const layer = spec.layers[index]
    if (!layer) fail('HOOK_INVALID', `Layer ${index} does not exist; the model has layers 0..${spec.layers.length - 1}.`)
    if (layer.kind !== 'moe') fail('HOOK_INVALID', `Layer ${index} is a dense MLP layer; expert hooks apply to MoE layers only.`)
    validateLayerHooks(layer, hooks, spec.hiddenSize)
  }
  for (const [name, data] of Object.entries(edits.overrides)) {
    const stored = data && typeof data === 'object' && isStoredOverride(data) && typeof data.file === 'string'
    if (!(data instanceof Float32Array) && !stored) fail('HOOK_INVALID', `Override '${name}' must be a Float32Array.`)
  }
}

function validateLayerHooks(layer: MoeLayerSpec, hooks: LayerHooks, hidden: number): void {
  const E = layer.numExperts
  const where = `layer ${layer.index}`
  const checkSlot = (e: number, what: string) => {
    if (!Number.isInteger(e) || e < 0 || e >= E) fail('HOOK_INVALID', `${where}: ${what} expert ${e} is out of range 0..${E - 1}.`)
  }
  const disabled = new Set(hooks.disabled ?? [])
  for (const e of disabled) checkSlot(e, 'disabled')
  if (hooks.topK !== undefined && !(Number.isInteger(hooks.topK) && hooks.topK >= 1 && hooks.topK <= E)) {
    fail('HOOK_INVALID', `${where}: top-k override must be an integer in 1..${E}, got ${hooks.topK}.`)
  }
  const topK = hooks.topK ?? layer.topK
  if (E - disabled.size < topK) {
    fail('HOOK_INVALID', `${where}: only ${E - disabled.size} experts would remain but top-k is ${topK}; disable at most ${E - topK}.`)
  }
  const groupProblem = groupedRemovalProblem(layer, [...disabled], topK)
  if (groupProblem) fail('HOOK_INVALID', `${where}: ${groupProblem}`)
  for (const [slot, src] of Object.entries(hooks.bindings ?? {})) {
    checkSlot(Number(slot), 'bound')
    checkSlot(src, 'binding source')
    if (disabled.has(Number(slot)) || disabled.has(src)) fail('HOOK_INVALID', `${where}: expert ${slot} is bound to ${src} but one of them is disabled.`)
  }
  for (const [slot, vec] of Object.entries(hooks.novices ?? {})) {
    checkSlot(Number(slot), 'novice')
    if (vec.length !== hidden) fail('HOOK_INVALID', `${where}: novice vector for expert ${slot} has length ${vec.length}, expected hidden_size ${hidden}.`)
    if (disabled.has(Number(slot))) fail('HOOK_INVALID', `${where}: expert ${slot} is both disabled and a novice.`)
    // A NaN/Inf novice makes every token routed to it score NaN, which accuracy metrics count as a wrong (or first-choice) answer.
    const bad = vec.findIndex(v => !Number.isFinite(v))
    if (bad >= 0) fail('HOOK_INVALID', `${where}: novice vector for expert ${slot} has a non-finite value (${vec[bad]}) at ${bad}; replace NaN/Inf (e.g. an expert with no routed calibration tokens) by a finite vector.`)
  }
  if (hooks.neuronKeep !== undefined && !(hooks.neuronKeep > 0 && hooks.neuronKeep <= 1)) {
    fail('HOOK_INVALID', `${where}: neuron top-k keep fraction must be in (0, 1], got ${hooks.neuronKeep}.`)
  }
  if (hooks.skipSecondBeta !== undefined) {
    if (topK !== 2) fail('HOOK_INVALID', `${where}: dynamic skipping needs top-2 routing (top-k is ${topK}).`)
    if (!(hooks.skipSecondBeta >= 0 && hooks.skipSecondBeta <= 1)) fail('HOOK_INVALID', `${where}: skip threshold beta must be in [0, 1].`)
  }
}

/**
 * Why removing `disabled` leaves a group-limited router (DeepSeek group_limited_greedy / noaux_tc,
 * n_group > 1) unable to route, or null when it can: every group must keep at least one expert, and
 * any topk_group groups the router may pick must together hold top-k experts (the sum of the
 * topk_group smallest group sizes >= k). Groups keep their original slots; see moeGraph routeTopK.
 */
export function groupedRemovalProblem(layer: MoeLayerSpec, disabled: readonly number[], topK = layer.topK): string | null {
  const { nGroup, topkGroup } = layer.router
  if (nGroup <= 1) return null
  const size = layer.numExperts / nGroup
  const left = Array.from({ length: nGroup }, () => size)
  for (const e of new Set(disabled)) left[Math.floor(e / size)]--
  const empty = left.findIndex(n => n < 1)
  if (empty >= 0) {
    return `group ${empty} (experts ${empty * size}..${(empty + 1) * size - 1}) would lose all its experts; the group-limited router (n_group ${nGroup}) needs at least one expert in every group. Remove experts more evenly across groups.`
  }
  const worst = [...left].sort((a, b) => a - b).slice(0, topkGroup).reduce((a, b) => a + b, 0)
  if (worst < topK) {
    return `the ${topkGroup} smallest expert groups would hold only ${worst} experts (per group: ${left.join(', ')}) but the router picks top-${topK} from its topk_group ${topkGroup} groups. Remove fewer experts, or more evenly across groups.`
  }
  return null
}

/**
 * Fail-fast check before calibration: the most experts a method may remove from this layer so that
 * the router can still route, when the removal is spread as evenly as possible over the groups.
 * Ungrouped routers: E - top-k. Grouped: each group keeps s experts with topk_group · s >= top-k.
 */
export function maxRemovableExperts(layer: MoeLayerSpec, topK = layer.topK): number {
  const { nGroup, topkGroup } = layer.router
  if (nGroup <= 1) return layer.numExperts - topK
  const keepPerGroup = Math.max(1, Math.ceil(topK / topkGroup))
  return layer.numExperts - nGroup * keepPerGroup
}

/**
 * What a variant's edits compute, as a 24-hex key (identical edits share results; the same values
 * in memory or stored hash alike); derived in src/identity/keys.ts with every other key.
 */
export function contentHash(edits: VariantEdits): string {
  return editsContentHash(edits, overrideDigest)
}

/**
 * Number of neurons kept per token for a keep fraction rho: ceil(rho * F), at least 1 (the 1e-9 absorbs
 * float error, e.g. rho = 1 - 0.25 on F = 8). The graph, the accounting and the method's achieved ratio
 * all use this; never rho * F, which is wrong whenever rho * F is fractional.
 */
export function neuronsKept(rho: number, ffn: number): number {
  return Math.max(1, Math.min(ffn, Math.ceil(rho * ffn - 1e-9)))
}

/**
 * Parses the CLI form "L:e1,e2;L2:e3" into disabled-expert lists per layer.
 */
export function parseExpertMask(text: string): Record<number, number[]> {
  const out: Record<number, number[]> = {}
  for (const part of text.split(';').map(s => s.trim()).filter(Boolean)) {
    const m = /^(\d+)\s*:\s*(\d+(?:\s*,\s*\d+)*)$/.exec(part)
    if (!m) fail('INVALID_ARGUMENT', `--mask-experts: cannot parse '${part}'; use "LAYER:e1,e2;LAYER:e3", e.g. "0:1,5;3:2".`)
    const layer = Number(m[1])
    out[layer] = [...new Set([...(out[layer] ?? []), ...m[2].split(',').map(s => Number(s.trim()))])].sort((a, b) => a - b)
  }
  return out
}
