import { defineMethod, maxWeightAssignment, p, removalCount, stableArgsort } from '../src/index.ts'
import type { MethodContext, MoeLayerSpec } from '../src/index.ts'

type Ctx = MethodContext<{ ratio: number; algorithm: string; allocation: string; align: string; distance: string }>

export default defineMethod({
  name: 'expert-merging',
  description: 'Merge experts into groups and bind every member slot to the merged weights (router kept, summed gates). m-smoe: dominant experts by usage, the rest join the most similar dominant by router-logit cosine, optional neuron permutation alignment (M-SMoE). hc-smoe: average-linkage clustering of the experts\' mean outputs over all tokens (HC-SMoE). Merges are usage-frequency weighted.',
  family: 'expert-merging',
  params: {
    ratio: p.ratio({ description: 'share of routed experts merged away: groups = E - floor(ratio · E) per layer (on average with global allocation)' }),
    algorithm: p.enum(['m-smoe', 'hc-smoe'], { default: 'hc-smoe', description: 'M-SMoE (arXiv 2310.01334) or HC-SMoE (arXiv 2410.08589)' }),
    allocation: p.enum(['layer', 'global'], { default: 'layer', description: 'm-smoe only: uniform groups per layer, or M-SMoE\'s global allocation by usage frequency' }),
    align: p.enum(['none', 'weight-matching'], { default: 'none', description: 'm-smoe only: permute each member\'s neurons onto the dominant expert (Hungarian weight matching) before averaging' }),
    distance: p.enum(['euclidean', 'cosine'], { default: 'euclidean', description: 'hc-smoe only: distance between mean outputs (cosine is REAP\'s re-implementation)' }),
  },
  needs: params => (params.algorithm === 'hc-smoe' ? ['routing', 'expertOutputsAll'] : ['routing']),
  validate(params, layout) {
    if (params.ratio === 0) return
    for (const l of layout.layers) if (removalCount(params.ratio, l.numExperts) === 0) throw new Error(`ratio ${params.ratio} merges no expert in layer ${l.index}; use at least ${(1 / l.numExperts).toFixed(4)}`)
  },
  apply(ctx) {
    const { params, layout, stats } = ctx
    if (params.ratio === 0) return { achievedRatio: 0 }
    const groupsPerLayer = params.algorithm === 'm-smoe' && params.allocation === 'global'
      ? globalAllocation(ctx)
      : layout.layers.map(l => l.numExperts - removalCount(params.ratio, l.numExperts))
    let merged = 0, total = 0
    const allGroups: number[][][] = []
    layout.layers.forEach((layer, li) => {
      const freq = stats.routing(layer.index).count
      const groups = params.algorithm === 'm-smoe' ? msmoeGroups(ctx, layer, groupsPerLayer[li]) : hcsmoeGroups(ctx, layer, groupsPerLayer[li])
      for (const g of groups) if (g.length > 1) mergeGroup(ctx, layer, g, freq)
      merged += layer.numExperts - groups.length
      total += layer.numExperts
      allGroups.push(groups)
    })
    return { achievedRatio: merged / total, notes: { groups: allGroups } }
  },
  reference: { paper: 'M-SMoE arXiv 2310.01334; HC-SMoE arXiv 2410.08589', code: 'UNITES-Lab/MC-SMoE grouping_mixtral.py; wazenmai/HC-SMoE grouping_mixtral.py' },
})

/** M-SMoE global allocation: the most used expert of each layer counts 1.0; keep those above the total-th frequency. */
function globalAllocation({ params, layout, stats }: Ctx): number[] {
  const total = layout.layers.reduce((s, l) => s + l.numExperts - removalCount(params.ratio, l.numExperts), 0)
  const freqs = layout.layers.map(l => {
    const c = Array.from(stats.routing(l.index).count)
    const sum = c.reduce((a, b) => a + b, 0) || 1
    const f = c.map(v => v / sum)
    f[stableArgsort(f, 'desc')[0]] = 1
    return f
  })
  const all = freqs.flat().sort((a, b) => b - a)
  const threshold = all[total] ?? -Infinity
  return freqs.map(f => Math.max(1, f.filter(v => v > threshold).length))
}

/** Dominants = the most used experts; every other expert joins the dominant with the most similar router logits. */
function msmoeGroups({ stats }: Ctx, layer: MoeLayerSpec, groups: number): number[][] {
  const r = stats.routing(layer.index)
  const E = layer.numExperts
  const dominants = stableArgsort(r.count, 'desc').slice(0, groups)
  const sim = (i: number, j: number) => {
    const denom = Math.sqrt(r.logitGram[i * E + i] * r.logitGram[j * E + j])
    return (r.logitGram[i * E + j] / Math.max(denom, 1e-7) + 1) / 2
  }
  const members = new Map(dominants.map(d => [d, [d]]))
  for (let e = 0; e < E; e++) {
    if (members.has(e)) continue
    let best = dominants[0]
    for (const d of dominants) if (sim(e, d) > sim(e, best) || (sim(e, d) === sim(e, best) && d < best)) best = d
    members.get(best)!.push(e)
  }
  return [...members.values()]
}

/** Average-linkage agglomerative clustering of mean outputs; the dominant is the member nearest the cluster mean. */
function hcsmoeGroups({ params, stats }: Ctx, layer: MoeLayerSpec, groups: number): number[][] {
  const E = layer.numExperts
  const o = stats.expertOutputsAll(layer.index)
  const d = o.length / E
  const vec = (e: number) => o.subarray(e * d, (e + 1) * d)
  const dist = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    if (params.distance === 'cosine') {
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

/** Frequency-weighted average of gate/up/down written into the dominant (first) slot; members bound to it. */
function mergeGroup({ params, layout, weights, experts, log }: Ctx, layer: MoeLayerSpec, group: number[], freq: ArrayLike<number>): void {
  const names = layout.names.layers[layer.index].experts!
  const dom = group[0]
  const F = layer.expertFfn, d = layout.hiddenSize
  const wsum = group.reduce((s, e) => s + freq[e], 0)
  const weight = (e: number) => (wsum > 0 ? freq[e] / (wsum + 1e-7) : 1 / group.length)
  if (wsum === 0) log.warn(`layer ${layer.index}: merge group ${group} has no routed tokens; averaged unweighted`)
  const merged = { gate: new Float32Array(F * d), up: new Float32Array(F * d), down: new Float32Array(d * F) }
  const ref = { gate: weights.get(names[dom].gate), up: weights.get(names[dom].up), down: weights.get(names[dom].down) }
  for (const e of group) {
    let g = weights.get(names[e].gate), u = weights.get(names[e].up), w = weights.get(names[e].down)
    if (params.align === 'weight-matching' && e !== dom) [g, u, w] = alignTo(ref, g, u, w, F, d)
    const c = weight(e)
    for (let i = 0; i < F * d; i++) { merged.gate[i] += c * g[i]; merged.up[i] += c * u[i]; merged.down[i] += c * w[i] }
  }
  weights.set(names[dom].gate, merged.gate)
  weights.set(names[dom].up, merged.up)
  weights.set(names[dom].down, merged.down)
  for (const e of group.slice(1)) experts.bind(layer.index, e, dom)
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
