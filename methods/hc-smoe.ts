import { defineMethod, hcsmoeGroups, mergeGroup, p, removalCount, uniformGroups, usageFrequencies } from '../src/index.ts'

export default defineMethod({
  name: 'hc-smoe',
  description: 'HC-SMoE: average-linkage hierarchical clustering of the experts\' mean outputs over all calibration tokens (every expert forced on every token), then usage-frequency-weighted averaging of each cluster; every member slot is bound to the merged expert (router kept, summed gates). When fewer groups than top-k remain, top_k := groups (official code), in the engine and in the exported config. A group that received no calibration token merges to zeros, as the official formula gives (warned).',
  family: 'expert-merging',
  params: {
    ratio: p.ratio({ description: 'share of routed experts merged away: groups = E - floor(ratio · E) in every layer' }),
    distance: p.enum(['euclidean', 'cosine'], { default: 'euclidean', description: 'distance between mean outputs (euclidean = official; cosine = REAP\'s re-implementation)' }),
  },
  // Ratio 0 merges nothing (apply returns first) and reads no statistics, so a sweep does not calibrate for it.
  needs: params => (params.ratio === 0 ? [] : ['routing', 'expertOutputsAll']),
  validate(params, layout) {
    if (params.ratio === 0) return
    for (const l of layout.layers) if (removalCount(params.ratio, l.numExperts) === 0) throw new Error(`ratio ${params.ratio} merges no expert in layer ${l.index}; use at least ${(1 / l.numExperts).toFixed(4)}`)
  },
  apply(ctx) {
    const { params, layout, stats, runtime } = ctx
    if (params.ratio === 0) return { achievedRatio: 0 }
    const groupsPerLayer = uniformGroups(layout, params.ratio)
    let merged = 0, total = 0
    const groups: number[][][] = [], empty: number[][][] = [], topK: number[] = []
    layout.layers.forEach((layer, li) => {
      const g = hcsmoeGroups(stats.expertOutputsAll(layer.index), layer.numExperts, groupsPerLayer[li], params.distance)
      const freq = usageFrequencies(stats.routing(layer.index).count)
      empty.push(g.filter(group => mergeGroup(ctx, layer, group, freq) === 'empty'))
      // merging-mixtral.py: `if num_average_groups < num_experts_per_tok: num_experts_per_tok = num_average_groups`.
      if (g.length < layer.topK) runtime.setTopK(layer.index, g.length)
      topK.push(Math.min(layer.topK, g.length))
      merged += layer.numExperts - g.length
      total += layer.numExperts
      groups.push(g)
    })
    return { achievedRatio: merged / total, notes: { groups, emptyGroups: empty, topK } }
  },
  reference: { paper: 'HC-SMoE, arXiv 2410.08589', code: 'wazenmai/HC-SMoE hcsmoe/merging/grouping_mixtral.py, hcsmoe/merging-mixtral.py' },
})
