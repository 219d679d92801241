// Expert merging shared by methods/m-smoe.ts, methods/hc-smoe.ts and the deprecated alias
// methods/expert-merging.ts: grouping (M-SMoE's usage-dominant grouping with global allocation,
// HC-SMoE's average-linkage clustering) and the frequency-weighted merge both official codes use.
// Sources: UNITES-Lab/MC-SMoE mcsmoe/merging/grouping_mixtral.py; wazenmai/HC-SMoE
// hcsmoe/merging/grouping_mixtral.py, hcsmoe/merging-mixtral.py (methods.md §13, §14).
import { fail } from '../errors.ts'
import type { MoeLayerSpec } from '../model/modelSpec.ts'
import type { ExpertControls, MethodLogger, MoeLayout, WeightStore } from './defineMethod.ts'
import { maxWeightAssignment, removalCount, stableArgsort } from './helpers.ts'

/** FP32_EPS of both official codes (hcsmoe/utils/constants.py): the merge denominator's epsilon. */
export const MERGE_EPS = 1e-7

/**
 * Usage frequencies as both official codes compute them (compute_all_usages, mode "frequency"):
 * top-k counts normalised to sum 1 over the layer (all zeros when the layer saw no token). The
 * official Mixtral scripts hard-code top-2; the counts here use the model's own k.
 */
export function usageFrequencies(count: ArrayLike<number>): Float64Array {
  let sum = 0
  for (let i = 0; i < count.length; i++) sum += count[i]
  return Float64Array.from(count, c => (sum > 0 ? c / sum : 0))
}

interface MergeContext {
  layout: MoeLayout
  weights: WeightStore
  experts: ExpertControls
  log: MethodLogger
}

/**
 * Frequency-weighted merge (`_merge_mlp_experts_by_usage_frequency_weighting`, identical in both
 * official codes): W̃ = Σ_i f_i·W_i / (Σ_i f_i + 1e-7) for gate, up and down, written into the first
 * slot of `group`; every other member is bound to it (router kept, summed gates).
 *
 * Empty groups (every member has f = 0, i.e. no routed calibration token): the official formula
 * gives 0 / (0 + 1e-7) = 0, so the merged expert is all zeros and its slots contribute nothing
 * (the gate mass that reaches them is lost). We follow the official code, not methods.md's
 * suggested unweighted fallback, and warn naming the group. A singleton with f = 0 is such a group
 * too (the official code merges singletons as well); a singleton with f > 0 is left untouched, a
 * documented deviation: the official formula scales it by f / (f + 1e-7), which would rewrite every
 * expert's weights for a change below 1e-7 / f.
 *
 * align = 'weight-matching' permutes each member's neurons onto the first slot's (Hungarian weight
 * matching on the SwiGLU weights, REAP's M-SMoE) before averaging.
 * Returns whether the group was 'empty' (zeroed), 'merged', or left 'unchanged'.
 */
export function mergeGroup({ layout, weights, experts, log }: MergeContext, layer: MoeLayerSpec, group: readonly number[], freq: ArrayLike<number>, align: 'none' | 'weight-matching' = 'none'): 'empty' | 'merged' | 'unchanged' {
  const names = layout.names.layers[layer.index].experts ?? fail('METHOD_FAILED', `layer ${layer.index} has no routed experts`)
  const dom = group[0]
  const F = layer.expertFfn, d = layout.hiddenSize
  const wsum = group.reduce((s, e) => s + freq[e], 0)
  if (group.length === 1 && wsum > 0) return 'unchanged'
  if (wsum === 0) log.warn(`layer ${layer.index}: merge group [${group.join(', ')}] received no calibration tokens; its merged expert is all zeros, as the official merge formula gives (Σ f·W / (Σ f + 1e-7))`)
  const merged = { gate: new Float32Array(F * d), up: new Float32Array(F * d), down: new Float32Array(d * F) }
  const ref = align === 'weight-matching' ? { gate: weights.get(names[dom].gate), up: weights.get(names[dom].up), down: weights.get(names[dom].down) } : undefined
  for (const e of group) {
    const c = freq[e] / (wsum + MERGE_EPS)
    if (c === 0) continue
    let g = weights.get(names[e].gate), u = weights.get(names[e].up), w = weights.get(names[e].down)
    if (ref && e !== dom) [g, u, w] = alignTo(ref, g, u, w, F, d)
    for (let i = 0; i < F * d; i++) { merged.gate[i] += c * g[i]; merged.up[i] += c * u[i]; merged.down[i] += c * w[i] }
  }
  weights.set(names[dom].gate, merged.gate)
  weights.set(names[dom].up, merged.up)
  weights.set(names[dom].down, merged.down)
  for (const e of group.slice(1)) experts.bind(layer.index, e, dom)
  return wsum === 0 ? 'empty' : 'merged'
}

/** Permutes the member's intermediate neurons to best match the reference (SwiGLU weight matching). */
function alignTo(ref: { gate: Float32Array; up: Float32Array; down: Float32Array }, g: Float32Array, u: Float32Array, w: Float32Array, F: number, d: number): [Float32Array, Float32Array, Float32Array] {
  const score = new Float64Array(F * F)
  for (let a = 0; a < F; a++) {
    for (let b = 0; b < F; b++) {
      let s = 0
      for (let j = 0; j < d; j++) s += ref.gate[a * d + j] * g[b * d + j] + ref.up[a * d + j] * u[b * d + j] + ref.down[j * F + a] * w[j * F + b]
      score[a * F + b] = s
    }
  }
  const perm = maxWeightAssignment(score, F)
  const g2 = new Float32Array(F * d), u2 = new Float32Array(F * d), w2 = new Float32Array(d * F)
  for (let a = 0; a < F; a++) {
    g2.set(g.subarray(perm[a] * d, (perm[a] + 1) * d), a * d)
    u2.set(u.subarray(perm[a] * d, (perm[a] + 1) * d), a * d)
    for (let j = 0; j < d; j++) w2[j * F + a] = w[j * F + perm[a]]
  }
  return [g2, u2, w2]
}

/** Groups per layer with the same count in every layer: E − floor(ratio · E). */
export function uniformGroups(layout: MoeLayout, ratio: number): number[] {
  return layout.layers.map(l => l.numExperts - removalCount(ratio, l.numExperts))
}

/**
 * M-SMoE's global allocation (`_assign_num_groups_per_layer`): usage frequencies per layer, the most
 * used expert of each layer set to 1.0 (every layer keeps a group), threshold = the total-th largest
 * frequency over all layers (0-based), groups_l = experts of layer l with frequency > threshold.
 * total = Σ_l (E_l − floor(ratio·E_l)) (the official num_average_groups × layers). Strict '>' means
 * ties at the threshold can give fewer groups than `total` (the achieved ratio records it).
 * Errors: METHOD_INFEASIBLE when the threshold is 1.0 (more groups requested than can be told apart).
 */
export function globalGroupAllocation(layout: MoeLayout, ratio: number, counts: readonly ArrayLike<number>[]): number[] {
  const total = uniformGroups(layout, ratio).reduce((a, b) => a + b, 0)
  const freqs = counts.map(c => {
    const f = usageFrequencies(c)
    f[stableArgsort(f, 'desc')[0]] = 1 // torch.argmax: the first maximum
    return f
  })
  const all = freqs.flatMap(f => Array.from(f)).sort((a, b) => b - a)
  const threshold = all[total] ?? -Infinity
  if (threshold === 1) fail('METHOD_INFEASIBLE', `M-SMoE global allocation: ${total} groups cannot be told apart by usage frequency (threshold 1.0); use a larger ratio or allocation=layer`)
  return freqs.map(f => f.filter(v => v > threshold).length)
}

/**
 * M-SMoE grouping (`group_experts_globally_from_dominant_experts`): the `groups` most used experts
 * (ties by lower index) are dominants; every other expert, in order of usage, joins the dominant
 * whose router-logit column is most similar, sim(i, j) = (cos(L[:, i], L[:, j]) + 1) / 2 with the
 * cosine from the logit Gram matrix (eps 1e-7); ties go to the more used dominant (torch.argmax over
 * the usage-ordered dominants). Returns groups with their dominant first.
 */
export function msmoeGroups(count: ArrayLike<number>, logitGram: ArrayLike<number>, E: number, groups: number): number[][] {
  const order = stableArgsort(count, 'desc')
  const dominants = order.slice(0, groups)
  const sim = (i: number, j: number) => (logitGram[i * E + j] / Math.max(Math.sqrt(logitGram[i * E + i] * logitGram[j * E + j]), 1e-7) + 1) / 2
  const members = new Map(dominants.map(d => [d, [d]]))
  for (const e of order.slice(groups)) {
    let best = dominants[0]
    for (const d of dominants) if (sim(e, d) > sim(e, best)) best = d
    members.get(best)!.push(e)
  }
  return [...members.values()]
}

/**
 * HC-SMoE grouping (hierarchical_clustering, linkage 'average'): agglomerative clustering of the
 * experts' mean outputs over all tokens (forced), merging the pair of clusters with the smallest
 * mean pairwise distance until `groups` remain (ties: the lowest (i, j)). The first member of each
 * returned group is the one nearest the cluster mean.
 */
export function hcsmoeGroups(meanOutputs: Float64Array, E: number, groups: number, distance: 'euclidean' | 'cosine'): number[][] {
  const d = meanOutputs.length / E
  const vec = (e: number) => meanOutputs.subarray(e * d, (e + 1) * d)
  const dist = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    if (distance === 'cosine') {
      let ab = 0, aa = 0, bb = 0
      for (let j = 0; j < d; j++) { ab += a[j] * b[j]; aa += a[j] * a[j]; bb += b[j] * b[j] }
      return 1 - ab / Math.max(Math.sqrt(aa * bb), 1e-12)
    }
    let s = 0
    for (let j = 0; j < d; j++) s += (a[j] - b[j]) ** 2
    return Math.sqrt(s)
  }
  const D = Array.from({ length: E }, (_, i) => Array.from({ length: E }, (_, j) => dist(vec(i), vec(j))))
  let clusters = Array.from({ length: E }, (_, e) => [e])
  while (clusters.length > groups) {
    let bi = 0, bj = 1, best = Infinity
    for (let i = 0; i < clusters.length; i++) {
      for (let j = i + 1; j < clusters.length; j++) {
        let s = 0
        for (const a of clusters[i]) for (const b of clusters[j]) s += D[a][b]
        const avg = s / (clusters[i].length * clusters[j].length)
        if (avg < best) { best = avg; bi = i; bj = j }
      }
    }
    clusters[bi] = [...clusters[bi], ...clusters[bj]].sort((a, b) => a - b)
    clusters = clusters.filter((_, k) => k !== bj)
  }
  return clusters.map(c => {
    const mean = new Float64Array(d)
    for (const e of c) for (let j = 0; j < d; j++) mean[j] += vec(e)[j] / c.length
    let dom = c[0]
    for (const e of c) if (dist(vec(e), mean) < dist(vec(dom), mean)) dom = e
    return [dom, ...c.filter(e => e !== dom)]
  })
}
