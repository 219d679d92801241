import { defineMethod, dropLowest, p, removalCount, stableArgsort } from '../src/index.ts'

export default defineMethod({
  name: 'novice-replacement',
  description: 'MoNE-P: replace the least important experts by a constant "novice" that outputs their mean routed output. Importance = output fluctuation (‖sqrt(var)‖₂ over routed tokens) × routing score (mean top-k gate mass per token). The router is kept, so a novice slot still receives its gate.',
  family: 'novice-replacement',
  params: {
    ratio: p.ratio({ description: 'share of routed experts replaced per layer (scope = layer) or overall (scope = model)' }),
    scope: p.enum(['layer', 'model'], { default: 'layer', description: 'layer = uniform per layer (MoNE-P); model = one global ranking' }),
    rankingMetric: p.enum(['fusion', 'output_fluctuation', 'routing_score'], { default: 'fusion', description: 'fusion = φ_var · φ_freq (the paper\'s default); or either factor alone' }),
    freqMode: p.enum(['gateMassPerToken', 'meanGateWhenRouted'], { default: 'gateMassPerToken', description: 'φ_freq as in the official code (gate mass / all tokens) or the paper notes (mean gate over routed tokens)' }),
    novice: p.enum(['mean', 'zero'], { default: 'mean', description: 'mean routed output (MoNE-P) or zero (the --zero_out_novice ablation)' }),
  },
  // Ratio 0 replaces nothing and reads no statistics, so a sweep does not calibrate for it.
  needs: params => (params.ratio === 0 ? [] : ['routing', 'expertOutputs']),
  validate(params, layout) {
    if (params.ratio === 0) return
    if (params.scope === 'layer') {
      for (const l of layout.layers) if (removalCount(params.ratio, l.numExperts) === 0) throw new Error(`ratio ${params.ratio} replaces no expert in layer ${l.index}; use at least ${(1 / l.numExperts).toFixed(4)}`)
    }
  },
  apply({ params, layout, stats, experts, log }) {
    if (params.ratio === 0) return { achievedRatio: 0 }
    const d = layout.hiddenSize
    const perLayer = layout.layers.map(layer => {
      const r = stats.routing(layer.index)
      const o = stats.expertOutputs(layer.index)
      return Array.from({ length: layer.numExperts }, (_, e) => {
        const n = r.count[e]
        let varNormSq = 0
        const mean = new Float32Array(d)
        if (n > 0) for (let j = 0; j < d; j++) mean[j] = o.sum[e * d + j] / n
        if (n > 1) {
          for (let j = 0; j < d; j++) {
            const v = (o.sumSq[e * d + j] - (o.sum[e * d + j] * o.sum[e * d + j]) / n) / (n - 1)
            varNormSq += Math.max(0, v)
          }
        }
        if (n === 0) log.warn(`layer ${layer.index} expert ${e}: no routed calibration tokens; score 0, novice = zero vector`)
        const phiVar = Math.sqrt(varNormSq)
        const phiFreq = params.freqMode === 'gateMassPerToken' ? r.gateSum[e] / r.tokens : n > 0 ? r.gateSum[e] / n : 0
        const score = params.rankingMetric === 'fusion' ? phiVar * phiFreq : params.rankingMetric === 'output_fluctuation' ? phiVar : phiFreq
        return { score, mean }
      })
    })
    const replaced: number[][] = layout.layers.map(() => [])
    if (params.scope === 'layer') {
      layout.layers.forEach((layer, li) => {
        replaced[li] = dropLowest(perLayer[li].map(x => x.score), layer.numExperts - removalCount(params.ratio, layer.numExperts))
      })
    } else {
      const flat = layout.layers.flatMap((_, li) => perLayer[li].map((x, e) => ({ li, e, s: x.score })))
      const order = stableArgsort(flat.map(x => x.s), 'asc').slice(0, removalCount(params.ratio, flat.length))
      for (const i of order) replaced[flat[i].li].push(flat[i].e)
    }
    let count = 0, total = 0
    layout.layers.forEach((layer, li) => {
      for (const e of replaced[li]) experts.setNovice(layer.index, e, params.novice === 'mean' ? perLayer[li][e].mean : new Float32Array(d))
      count += replaced[li].length
      total += layer.numExperts
    })
    return { achievedRatio: count / total, notes: { scores: perLayer.map(l => l.map(x => x.score)), replaced } }
  },
  reference: { paper: 'Mixture-of-Novices-and-Experts, arXiv 2507.00390', code: 'zxgx/mode-pd modepd/pruning/expert_prune.py::expert_prune_by_mone' },
})
