import { checkUniformRemoval, defineMethod, p, removalCount, removedShare, removeLowestPerLayer, stableArgsort, superExperts } from '../src/index.ts'

export default defineMethod({
  name: 'frequency-pruning',
  description: 'Remove the experts the router uses least on the calibration set (REAP App. D baseline; HC-SMoE "F-prune"). Soft variants rank by softmax mass (S-prune) or top-k gate mass (MoNE-P\'s RS baseline). Physical removal: the survivors renormalise.',
  family: 'expert-pruning',
  params: {
    ratio: p.ratio({ description: 'share of routed experts removed per layer: floor(ratio · E)' }),
    score: p.enum(['count', 'softmax-mass', 'gate-mass'], { default: 'count', description: 'count = tokens routed to the expert; softmax-mass = mean full-softmax probability over all tokens; gate-mass = mean top-k gate per token' }),
    scope: p.enum(['layer', 'global'], { default: 'layer', description: 'layer = floor(ratio·E) per layer; global = one ranking across layers (counts vary per layer, each keeps at least top-k)' }),
    protectSuperExperts: p.boolean({ default: false, description: 'never remove experts with massive output activations (max |y| > 10× the median expert)' }),
  },
  // Ratio 0 removes nothing and reads no statistics, so a sweep does not calibrate for it.
  needs: params => (params.ratio === 0 ? [] : params.protectSuperExperts ? ['routing', 'expertOutputs'] : ['routing']),
  validate: (params, layout) => checkUniformRemoval(params.ratio, layout),
  apply({ params, layout, stats, experts, log }) {
    if (params.ratio === 0) return { achievedRatio: 0 }
    const scores = layout.layers.map(layer => {
      const r = stats.routing(layer.index)
      const s = Array.from({ length: layer.numExperts }, (_, e) =>
        params.score === 'count' ? r.count[e] : params.score === 'softmax-mass' ? r.softmaxSum[e] / r.tokens : r.gateSum[e] / r.tokens)
      if (s.some(v => v === 0)) log.warn(`layer ${layer.index}: experts with no routed calibration tokens score 0 and go first`)
      return s
    })
    if (params.protectSuperExperts) {
      const guarded = superExperts(layout.layers.map(l => stats.expertOutputs(l.index)), 10)
      layout.layers.forEach((l, li) => scores[li].forEach((_, e) => { if (guarded.has(`${li}:${e}`)) scores[li][e] = Infinity }))
    }
    if (params.scope === 'layer') return { achievedRatio: removeLowestPerLayer(layout, experts, params.ratio, scores), notes: { scores } }
    // One ranking over every (layer, expert); skip removals that would leave a layer below top-k.
    const flat = layout.layers.flatMap((layer, li) => scores[li].map((s, e) => ({ li, e, s })))
    const want = removalCount(params.ratio, flat.length)
    const left = layout.layers.map(l => l.numExperts)
    let done = 0
    for (const i of stableArgsort(flat.map(x => x.s), 'asc')) {
      if (done === want) break
      const { li, e } = flat[i]
      if (left[li] - 1 < layout.layers[li].topK || !Number.isFinite(flat[i].s)) continue
      experts.remove(layout.layers[li].index, e)
      left[li]--
      done++
    }
    return { achievedRatio: removedShare(layout, experts), notes: { scores } }
  },
  reference: { paper: 'REAP arXiv 2510.13999 App. D; HC-SMoE arXiv 2410.08589', code: 'CerebrasResearch/reap src/reap/prune.py' },
})
