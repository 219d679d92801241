import { checkUniformRemoval, defineMethod, p, removeLowestPerLayer, superExperts } from '../src/index.ts'

export default defineMethod({
  name: 'ean',
  description: 'EAN (expert activation norm): remove the experts with the lowest S_e = Σ over routed tokens of ‖E_e(x)‖₂ — a sum, so frequency counts too. Physical removal, uniform per layer.',
  family: 'expert-pruning',
  params: {
    ratio: p.ratio({ description: 'share of routed experts removed per layer: floor(ratio · E)' }),
    protectSuperExperts: p.boolean({ default: false, description: 'never remove experts with massive output activations (max |y| > 10× the median expert)' }),
  },
  // Ratio 0 removes nothing and reads no statistics, so a sweep does not calibrate for it.
  needs: params => (params.ratio === 0 ? [] : ['expertOutputs']),
  validate: (params, layout) => checkUniformRemoval(params.ratio, layout),
  apply({ params, layout, stats, experts }) {
    if (params.ratio === 0) return { achievedRatio: 0 }
    const outputs = layout.layers.map(l => stats.expertOutputs(l.index))
    const guarded = params.protectSuperExperts ? superExperts(outputs, 10) : new Set<string>()
    const scores = layout.layers.map((_, li) => Array.from(outputs[li].normSum, (v, e) => (guarded.has(`${li}:${e}`) ? Infinity : v)))
    return { achievedRatio: removeLowestPerLayer(layout, experts, params.ratio, scores), notes: { scores } }
  },
  reference: { paper: 'Finding Fantastic Experts, arXiv 2504.05586; REAP App. D Eq. 13', code: 'CerebrasResearch/reap (ean_sum)' },
})
