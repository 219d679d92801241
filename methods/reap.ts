import { checkUniformRemoval, defineMethod, p, removeLowestPerLayer, superExperts } from '../src/index.ts'

export default defineMethod({
  name: 'reap',
  description: 'REAP: remove the experts with the lowest router-weighted expert activation norm, S_e = mean over routed tokens of g_e(x)·‖E_e(x)‖₂ (gates renormalised over the token\'s top-k by default). Physical removal, uniform per layer.',
  family: 'expert-pruning',
  params: {
    ratio: p.ratio({ description: 'share of routed experts removed per layer: floor(ratio · E)' }),
    renormalizeRouterWeights: p.boolean({ default: true, description: 'gates renormalised over the token\'s top-k (REAP default); false uses the gates the model applies' }),
    protectSuperExperts: p.boolean({ default: false, description: 'never remove experts with massive output activations (max |y| > 10× the median expert)' }),
  },
  // Ratio 0 removes nothing and reads no statistics, so a sweep does not calibrate for it.
  needs: params => (params.ratio === 0 ? [] : ['routing', 'expertOutputs']),
  validate: (params, layout) => checkUniformRemoval(params.ratio, layout),
  apply({ params, layout, stats, experts, log }) {
    if (params.ratio === 0) return { achievedRatio: 0 }
    const outputs = layout.layers.map(l => stats.expertOutputs(l.index))
    const guarded = params.protectSuperExperts ? superExperts(outputs, 10) : new Set<string>()
    const scores = layout.layers.map((layer, li) => {
      const count = stats.routing(layer.index).count
      const sums = params.renormalizeRouterWeights ? outputs[li].gateNormSum : outputs[li].gateNormSumModel
      return Array.from({ length: layer.numExperts }, (_, e) => {
        if (guarded.has(`${li}:${e}`)) return Infinity
        if (count[e] === 0) {
          log.warn(`layer ${layer.index} expert ${e}: no routed calibration tokens; REAP is 0/0, scored 0 (removed first)`)
          return 0
        }
        return sums[e] / count[e]
      })
    })
    return { achievedRatio: removeLowestPerLayer(layout, experts, params.ratio, scores), notes: { scores } }
  },
  reference: { paper: 'REAP, arXiv 2510.13999 (Eq. 9)', code: 'CerebrasResearch/reap src/reap/pruning_metrics.py' },
})
