import { defineMethod, globalGroupAllocation, mergeGroup, msmoeGroups, p, removalCount, uniformGroups, usageFrequencies } from '../src/index.ts'

export default defineMethod({
  name: 'm-smoe',
  description: 'M-SMoE (MC-SMoE without compression): the most used experts become dominants, every other expert joins the dominant with the most similar router logits, and each group is merged by usage-frequency-weighted averaging; every member slot is bound to the merged expert (router kept, summed gates). Groups are allocated across layers by usage frequency (allocation=global, the official default) or uniformly per layer. A group that received no calibration token merges to zeros, as the official formula gives (warned).',
  family: 'expert-merging',
  params: {
    ratio: p.ratio({ description: 'share of routed experts merged away: groups = E - floor(ratio · E) per layer on average (global allocation) or in every layer (allocation=layer)' }),
    allocation: p.enum(['global', 'layer'], { default: 'global', description: 'global = M-SMoE\'s allocation of groups across layers by usage frequency (official _assign_num_groups_per_layer); layer = the same number of groups in every layer' }),
    align: p.enum(['none', 'weight-matching'], { default: 'none', description: 'permute each member\'s neurons onto the dominant expert (Hungarian weight matching, REAP\'s M-SMoE) before averaging; the official Mixtral script does not' }),
  },
  // Ratio 0 merges nothing (apply returns first) and reads no statistics, so a sweep does not calibrate for it.
  needs: params => (params.ratio === 0 ? [] : ['routing']),
  validate(params, layout) {
    if (params.ratio === 0) return
    for (const l of layout.layers) if (removalCount(params.ratio, l.numExperts) === 0) throw new Error(`ratio ${params.ratio} merges no expert in layer ${l.index}; use at least ${(1 / l.numExperts).toFixed(4)}`)
  },
  apply(ctx) {
    const { params, layout, stats } = ctx
    if (params.ratio === 0) return { achievedRatio: 0 }
    const routing = layout.layers.map(l => stats.routing(l.index))
    const groupsPerLayer = params.allocation === 'global' ? globalGroupAllocation(layout, params.ratio, routing.map(r => r.count)) : uniformGroups(layout, params.ratio)
    let merged = 0, total = 0
    const groups: number[][][] = [], empty: number[][][] = []
    layout.layers.forEach((layer, li) => {
      const g = msmoeGroups(routing[li].count, routing[li].logitGram, layer.numExperts, groupsPerLayer[li])
      const freq = usageFrequencies(routing[li].count)
      empty.push(g.filter(group => mergeGroup(ctx, layer, group, freq, params.align) === 'empty'))
      merged += layer.numExperts - g.length
      total += layer.numExperts
      groups.push(g)
    })
    return { achievedRatio: merged / total, notes: { groups, groupsPerLayer, emptyGroups: empty } }
  },
  reference: { paper: 'Merge, Then Compress (M-SMoE), arXiv 2310.01334', code: 'UNITES-Lab/MC-SMoE mcsmoe/merging/grouping_mixtral.py (_assign_num_groups_per_layer, group_experts_globally_from_dominant_experts, _merge_mlp_experts_by_usage_frequency_weighting)' },
})
