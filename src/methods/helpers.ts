// Deterministic building blocks shared by the method plugins (exported to plugin authors).
import { fail } from '../errors.ts'
import type { LayerExpertOutputs } from '../calibration/stats.ts'
import type { MoeLayerSpec } from '../model/modelSpec.ts'
import type { ExpertControls, MoeLayout } from './defineMethod.ts'

/** Indices sorted by value ascending; ties by ascending index (stable, machine-independent). */
export function stableArgsort(values: ArrayLike<number>, order: 'asc' | 'desc' = 'asc'): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i)
  const sign = order === 'asc' ? 1 : -1
  return idx.sort((a, b) => sign * (values[a] - values[b]) || a - b)
}

/**
 * The one tie rule of methods.md §6: rank by score descending, ties by ascending index, keep the
 * first `keep`. Returns the indices NOT kept, ascending.
 */
export function dropLowest(scores: ArrayLike<number>, keep: number): number[] {
  // A NaN or a missing score makes the sort's comparator NaN, so the kept set would be arbitrary.
  for (let i = 0; i < scores.length; i++) {
    if (typeof scores[i] !== 'number' || Number.isNaN(scores[i])) {
      fail('INVALID_ARGUMENT', `score ${i} is ${Number.isNaN(scores[i]) ? 'NaN' : `not a number (${String(scores[i])})`}; give every expert a number (handle experts with no routed calibration tokens explicitly)`)
    }
  }
  return stableArgsort(scores, 'desc').slice(keep).sort((a, b) => a - b)
}

/** Experts removed per layer for a ratio: floor(ratio · E) (llm-compressor's int(E · sparsity)). */
export function removalCount(ratio: number, experts: number): number {
  return Math.floor(ratio * experts + 1e-9)
}

/**
 * Expert groups of a layer's router as pruning sees them: n_group for a group-limited router
 * (DeepSeek group_limited_greedy / noaux_tc with n_group > 1), else 1 (the whole layer).
 */
function prunedGroups(layer: MoeLayerSpec): number {
  return layer.router.nGroup > 1 ? layer.router.nGroup : 1
}

/**
 * Experts removeLowestPerLayer removes from `layer` for a ratio: floor(ratio · E); on a group-limited
 * router the same number from each of the G groups, floor(floor(ratio · E) / G) (checkUniformRemoval
 * refuses a ratio whose floor(ratio · E) does not split equally, so validated ratios remove exactly
 * floor(ratio · E) there too, and the sweep's ratio axis means the same on every model).
 */
export function layerRemovalCount(ratio: number, layer: MoeLayerSpec): number {
  const groups = prunedGroups(layer)
  return groups * Math.floor(removalCount(ratio, layer.numExperts) / groups)
}

/**
 * Fail fast (before calibration) when the removal of removeLowestPerLayer would leave fewer than
 * top_k experts, when a non-zero ratio would remove nothing, or, on a group-limited router, when
 * floor(ratio · E) experts do not split equally over the G groups or would leave a group fewer than
 * ceil(top_k / topk_group) experts (at least one). The message says which ratios are feasible.
 * Throws a plain Error; validateMethod maps it to METHOD_INFEASIBLE (phase validate).
 */
export function checkUniformRemoval(ratio: number, layout: MoeLayout, what = 'removed'): void {
  if (ratio === 0) return
  for (const l of layout.layers) {
    const drop = removalCount(ratio, l.numExperts)
    const groups = prunedGroups(l)
    if (groups === 1) {
      if (drop === 0) throw new Error(`ratio ${ratio} ${what} no expert in layer ${l.index} (floor(${ratio} × ${l.numExperts}) = 0); use a ratio of at least ${(1 / l.numExperts).toFixed(4)}`)
      if (l.numExperts - drop < l.topK) {
        throw new Error(`ratio ${ratio} leaves ${l.numExperts - drop} experts in layer ${l.index} but the router picks top-${l.topK}; the largest feasible ratio is ${((l.numExperts - l.topK) / l.numExperts).toFixed(4)}`)
      }
      continue
    }
    // Group-limited router: the same number of experts leaves every group (removeLowestPerLayer).
    const size = l.numExperts / groups
    const mostPerGroup = size - Math.max(1, Math.ceil(l.topK / l.router.topkGroup))
    const router = `layer ${l.index}'s router picks top-${l.topK} from ${l.router.topkGroup} of ${groups} expert groups of ${size}, so pruning removes the same number of experts from every group and each group keeps at least ${size - mostPerGroup}`
    const feasible = mostPerGroup < 1
      ? 'no ratio is feasible on this model'
      : `feasible ratios remove k = 1..${mostPerGroup} per group: ratio k/${size}, i.e. ${Array.from({ length: Math.min(mostPerGroup, 6) }, (_, k) => String(Number(((k + 1) / size).toFixed(4)))).join(', ')}${mostPerGroup > 6 ? ', …' : ''}`
    if (drop === 0) throw new Error(`ratio ${ratio} ${what} no expert in layer ${l.index} (floor(${ratio} × ${l.numExperts}) = 0); ${router}; ${feasible}`)
    if (drop % groups !== 0) throw new Error(`ratio ${ratio} removes floor(${ratio} × ${l.numExperts}) = ${drop} experts, which do not split equally over ${groups} groups: ${router}; ${feasible}`)
    if (drop / groups > mostPerGroup) {
      throw new Error(`ratio ${ratio} removes ${drop / groups} of ${size} experts in each group, but ${router}; ${feasible}`)
    }
  }
}

/** Share of the routed experts, over all MoE layers, that the method has physically removed. */
export function removedShare(layout: MoeLayout, experts: ExpertControls): number {
  const removed = layout.layers.reduce((n, l) => n + experts.removed(l.index).length, 0)
  return removed / layout.layers.reduce((n, l) => n + l.numExperts, 0)
}

/**
 * Uniform physical removal: in every MoE layer remove the floor(ratio · E) experts with the lowest
 * score (tie rule of dropLowest). Returns the achieved share of routed experts removed.
 *
 * Group-limited routers (DeepSeek n_group > 1, layer.router / modelSpec.ts expertGroup: group g holds
 * experts g·E/G .. (g+1)·E/G - 1): the floor(ratio · E) / G lowest-scoring experts are removed within
 * each group, the same count per group (checkUniformRemoval refuses ratios where that is not whole).
 * Why: the papers' code (REAP CerebrasResearch/reap, llm-compressor, EAN, frequency pruning) ranks per layer only because its models route without groups; on a grouped
 * router a per-layer ranking can empty a group or leave the kept groups unable to supply top-k
 * (transformers DeepseekV3TopkRouter views the scores as [G, E/G], so unequal groups also cannot be
 * exported as a standard checkpoint). Equal per-group removal keeps every variant routable and
 * exportable (n_routed_experts and n_group stay consistent); within a group the paper's ranking is
 * unchanged. With G = 1 this is exactly the per-layer rule.
 * Errors: INVALID_ARGUMENT when `ratio` is not in [0, 1) or `scores` is not one list of E numbers (no NaN) per
 * MoE layer, in layout.layers order.
 */
export function removeLowestPerLayer(layout: MoeLayout, experts: ExpertControls, ratio: number, scores: readonly ArrayLike<number>[]): number {
  // A short or misaligned score list removed arbitrary experts silently (the missing scores compare as NaN).
  if (typeof ratio !== 'number' || !(ratio >= 0 && ratio < 1)) fail('INVALID_ARGUMENT', `removeLowestPerLayer: ratio must be a share in [0, 1) (params.ratio), got ${String(ratio)}`)
  const example = 'e.g. layout.layers.map(l => stats.routing(l.index).count)'
  if (!Array.isArray(scores) || scores.length !== layout.layers.length) {
    fail('INVALID_ARGUMENT', `removeLowestPerLayer: scores must hold one list per MoE layer, in layout.layers order (${layout.layers.length} lists), got ${Array.isArray(scores) ? `${scores.length} entries` : typeof scores}; ${example}`)
  }
  layout.layers.forEach((layer, li) => {
    const got = scores[li] as ArrayLike<number> | undefined
    if (!got || typeof got.length !== 'number' || got.length !== layer.numExperts) {
      fail('INVALID_ARGUMENT', `removeLowestPerLayer: scores[${li}] (layer ${layer.index}) must hold one score per expert (${layer.numExperts}), got ${got && typeof got.length === 'number' ? `${got.length} values` : String(got)}; ${example}`)
    }
    for (let e = 0; e < layer.numExperts; e++) {
      if (typeof got[e] !== 'number' || Number.isNaN(got[e])) {
        fail('INVALID_ARGUMENT', `removeLowestPerLayer: scores[${li}][${e}] (layer ${layer.index}, expert ${e}) is ${Number.isNaN(got[e]) ? 'NaN' : `not a number (${String(got[e])})`}; give every expert a number (handle experts with no routed calibration tokens explicitly)`)
      }
    }
  })
  layout.layers.forEach((layer, li) => {
    const groups = prunedGroups(layer)
    const size = layer.numExperts / groups
    const drop = layerRemovalCount(ratio, layer) / groups
    for (let g = 0; g < groups; g++) {
      const within = Array.from({ length: size }, (_, i) => scores[li][g * size + i])
      for (const e of dropLowest(within, size - drop)) experts.remove(layer.index, g * size + e)
    }
  })
  return removedShare(layout, experts)
}

/** Experts whose largest output magnitude is a massive outlier (super experts, arXiv 2507.23279). */
export function superExperts(outputs: readonly LayerExpertOutputs[], factor: number): Set<string> {
  const all = outputs.flatMap(o => Array.from(o.maxAbs)).filter(v => v > 0).sort((a, b) => a - b)
  const med = all.length ? all[all.length >> 1] : 0
  const out = new Set<string>()
  outputs.forEach((o, li) => o.maxAbs.forEach((v, e) => { if (med > 0 && v > factor * med) out.add(`${li}:${e}`) }))
  return out
}

/** The k-th smallest value (0-based) of an array, by quickselect on a copy. */
export function kthSmallest(values: ArrayLike<number>, k: number): number {
  const a = Float64Array.from(values)
  let lo = 0, hi = a.length - 1
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1]
    let i = lo, j = hi
    while (i <= j) {
      while (a[i] < pivot) i++
      while (a[j] > pivot) j--
      if (i <= j) { const t = a[i]; a[i] = a[j]; a[j] = t; i++; j-- }
    }
    if (k <= j) hi = j
    else if (k >= i) lo = i
    else return a[k]
  }
  return a[k]
}

/**
 * Indices of the `count` smallest scores (ties by ascending index): everything below the count-th
 * value, then the earliest equal ones. O(n).
 */
export function smallestIndices(scores: ArrayLike<number>, count: number): Int32Array {
  if (count <= 0) return new Int32Array(0)
  if (count >= scores.length) return Int32Array.from({ length: scores.length }, (_, i) => i)
  const threshold = kthSmallest(scores, count - 1)
  const out = new Int32Array(count)
  let n = 0
  for (let i = 0; i < scores.length && n < count; i++) if (scores[i] < threshold) out[n++] = i
  for (let i = 0; i < scores.length && n < count; i++) if (scores[i] === threshold) out[n++] = i
  return out
}

/** Combinations of `k` out of 0..n-1 in lexicographic order. */
export function* combinations(n: number, k: number): Generator<number[]> {
  const c = Array.from({ length: k }, (_, i) => i)
  if (k > n) return
  for (;;) {
    yield [...c]
    let i = k - 1
    while (i >= 0 && c[i] === n - k + i) i--
    if (i < 0) return
    c[i]++
    for (let j = i + 1; j < k; j++) c[j] = c[j - 1] + 1
  }
}

/**
 * Maximum-weight perfect matching on an n × n score matrix (Hungarian algorithm, O(n³)).
 * Returns perm with perm[row] = column.
 */
export function maxWeightAssignment(score: Float64Array, n: number): Int32Array {
  // Minimise cost = -score with the shortest-augmenting-path formulation.
  const INF = Number.POSITIVE_INFINITY
  const u = new Float64Array(n + 1), v = new Float64Array(n + 1)
  const p = new Int32Array(n + 1), way = new Int32Array(n + 1)
  for (let i = 1; i <= n; i++) {
    p[0] = i
    let j0 = 0
    const minv = new Float64Array(n + 1).fill(INF)
    const used = new Uint8Array(n + 1)
    do {
      used[j0] = 1
      const i0 = p[j0]
      let delta = INF, j1 = 0
      for (let j = 1; j <= n; j++) {
        if (used[j]) continue
        const cur = -score[(i0 - 1) * n + (j - 1)] - u[i0] - v[j]
        if (cur < minv[j]) { minv[j] = cur; way[j] = j0 }
        if (minv[j] < delta) { delta = minv[j]; j1 = j }
      }
      for (let j = 0; j <= n; j++) {
        if (used[j]) { u[p[j]] += delta; v[j] -= delta } else minv[j] -= delta
      }
      j0 = j1
    } while (p[j0] !== 0)
    do {
      const j1 = way[j0]
      p[j0] = p[j1]
      j0 = j1
    } while (j0)
  }
  const perm = new Int32Array(n)
  for (let j = 1; j <= n; j++) perm[p[j] - 1] = j - 1
  return perm
}
