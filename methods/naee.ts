import { checkUniformRemoval, combinations, defineMethod, median, p, removalCount } from '../src/index.ts'
import type { LayerSamples } from '../src/index.ts'

export default defineMethod({
  name: 'naee',
  description: 'NAEE (Not All Experts are Equal): per layer, enumerate every subset of experts to drop and remove the one whose MoE output on calibration tokens stays closest (Frobenius) to the original; optional dynamic skipping drops a token\'s second expert when w2/w1 falls below the layer\'s median ratio. calibration=sequential is the official progressive_pruning (each layer\'s inputs re-collected with the earlier layers already pruned, compared with the unpruned model\'s outputs); one-pass is layerwise_pruning. Physical removal; E <= 16.',
  family: 'expert-pruning',
  params: {
    ratio: p.ratio({ description: 'share of routed experts removed per layer: floor(ratio · E)' }),
    calibration: p.enum(['sequential', 'one-pass'], { default: 'sequential', description: 'sequential = progressive_pruning (inputs X of layer L from the model with layers < L pruned; target Z from the unpruned model); one-pass = layerwise_pruning (X and Z from one pass of the unpruned model)' }),
    dynamicSkip: p.boolean({ default: false, description: 'also skip the second expert per token when w2/w1 < beta_l (median over calibration tokens of the unpruned model); top-2 layers only' }),
  },
  needs: params => (params.ratio > 0 ? ['layerSamples'] : []),
  // The target outputs Z (progressive) and dynamic skipping's beta come from the unpruned model.
  unprunedNeeds: params => [...(params.ratio > 0 && params.calibration === 'sequential' ? ['layerTargets' as const] : []), ...(params.dynamicSkip ? ['routing' as const] : [])],
  calibration: params => params.calibration,
  validate(params, layout) {
    checkUniformRemoval(params.ratio, layout)
    for (const l of layout.layers) {
      if (params.ratio > 0 && l.numExperts > 16) throw new Error(`layer ${l.index} has ${l.numExperts} experts; enumerating C(${l.numExperts}, ${removalCount(params.ratio, l.numExperts)}) subsets is infeasible (NAEE supports E <= 16); use reap or frequency-pruning`)
      if (params.dynamicSkip && l.topK !== 2) throw new Error(`dynamic skipping needs top-2 routing; layer ${l.index} uses top-${l.topK}`)
    }
  },
  applyLayer({ params, layout, stats, unpruned, experts, runtime }, layer) {
    const drop = removalCount(params.ratio, layer.numExperts)
    let losses: number[] | null = null
    if (drop > 0) {
      const s = stats.layerSamples(layer.index)
      // progressive: Z is the unpruned model's own output on these tokens; layerwise: from the same samples.
      const target = params.calibration === 'sequential' ? unpruned.layerTargets(layer.index).outputs : routedOutput(s, layer.numExperts, layer.topK, layer.normTopK, layout.hiddenSize, new Set())
      const best = enumerate(s, target, layer.numExperts, layer.topK, layer.normTopK, drop, layout.hiddenSize)
      losses = best.losses
      for (const e of best.dropped) experts.remove(layer.index, e)
    }
    if (params.dynamicSkip) runtime.skipSecondExpert(layer.index, median(unpruned.routing(layer.index).top2Ratios))
    return { removed: drop, total: layer.numExperts, notes: { losses } }
  },
  reference: { paper: 'Not All Experts are Equal, arXiv 2402.14800', code: 'Lucky-Lance/Expert_Sparsity method/expert_pruning.py (layerwise_pruning, progressive_pruning), model/wrapper.py, dynamic_skipping.py' },
})

/**
 * The layer's routed output on the sampled tokens (float64, [n, d]) with the experts in `mask`
 * excluded before the softmax; gates as the family computes them (renormalised over the top-k when
 * norm_topk_prob, as Mixtral and the official wrapper do). Ties in the top-k go to the lower index.
 */
function routedOutput(s: LayerSamples, E: number, k: number, norm: boolean, d: number, mask: Set<number>): Float64Array {
  const n = s.tokens
  const z = new Float64Array(n * d)
  for (let t = 0; t < n; t++) {
    const logits = Array.from(s.routerLogits.subarray(t * E, (t + 1) * E))
    const alive = logits.map((_, e) => !mask.has(e))
    const mx = Math.max(...logits.filter((_, e) => alive[e]))
    const ex = logits.map((v, e) => (alive[e] ? Math.exp(v - mx) : 0))
    const Z = ex.reduce((a, b) => a + b, 0)
    const order = ex.map((_, e) => e).filter(e => alive[e]).sort((a, b) => ex[b] - ex[a] || a - b).slice(0, k)
    const sum = order.reduce((a, e) => a + ex[e] / Z, 0)
    for (const e of order) {
      const w = norm ? ex[e] / Z / sum : ex[e] / Z
      const base = (e * n + t) * d
      for (let j = 0; j < d; j++) z[t * d + j] += w * s.expertOutputs[base + j]
    }
  }
  return z
}

/**
 * Loss of a dropped set = Σ over chunks of 256 sampled tokens of ‖Z − Z'‖_F (float64), where Z is the
 * target (the unpruned layer's output) and Z' the output on the sampled inputs with the dropped
 * experts masked before the softmax. Ties keep the first subset in lexicographic order.
 */
function enumerate(s: LayerSamples, target: Float64Array, E: number, k: number, norm: boolean, drop: number, d: number) {
  const n = s.tokens
  if (target.length !== n * d) throw new Error(`the unpruned and the sequential samples differ in size (${target.length / d} vs ${n} tokens)`)
  let dropped: number[] = []
  let bestLoss = Infinity
  const losses: number[] = []
  for (const subset of combinations(E, drop)) {
    const z = routedOutput(s, E, k, norm, d, new Set(subset))
    let loss = 0
    for (let c = 0; c < n; c += 256) {
      let sq = 0
      for (let i = c * d; i < Math.min(n, c + 256) * d; i++) sq += (target[i] - z[i]) ** 2
      loss += Math.sqrt(sq)
    }
    losses.push(loss)
    if (loss < bestLoss) { bestLoss = loss; dropped = subset }
  }
  return { dropped, losses }
}
