import { defineMethod, p, smallestIndices } from '../src/index.ts'

type Matrix = { name: string; expert: number; kind: 'gate' | 'up' | 'down' }

export default defineMethod({
  name: 'magnitude-pruning',
  description: 'Unstructured weight pruning of the routed experts\' gate/up/down matrices. magnitude: zero the smallest |W| per matrix (Wanda repo baseline). wanda: S = |W|·‖X_col‖₂ per output row with the inputs that reach each expert linear, collected layer by layer on the model whose earlier layers are already pruned (calibration=sequential, as prune_wanda does). moe-pruner: the same with router-weighted inputs ‖g·X_col‖₂. Router untouched.',
  family: 'unstructured',
  params: {
    ratio: p.ratio({ default: 0.5, description: 'fraction of weights zeroed in each targeted matrix (or N/M for an N:M pattern)' }),
    score: p.enum(['magnitude', 'wanda', 'moe-pruner'], { default: 'magnitude', description: 'what ranks a weight' }),
    pattern: p.enum(['unstructured', '2:4', '4:8'], { default: 'unstructured', description: 'unstructured, or N of every M consecutive inputs per output row (ratio must then be N/M)' }),
    calibration: p.enum(['sequential', 'one-pass'], { default: 'sequential', description: 'wanda / moe-pruner: sequential = each layer\'s input norms collected with the earlier layers already pruned (locuslab/wanda prune_wanda); one-pass = all from the unpruned model. magnitude needs no calibration' }),
  },
  needs: params => (params.score === 'magnitude' || params.ratio === 0 ? [] : ['inputNorms']),
  calibration: params => params.calibration,
  validate(params) {
    if (params.pattern !== 'unstructured' && params.ratio !== 0) {
      const [n, m] = params.pattern.split(':').map(Number)
      if (Math.abs(params.ratio - n / m) > 1e-9) throw new Error(`pattern ${params.pattern} zeroes exactly ${n / m} of the weights; set ratio ${n / m}`)
    }
  },
  applyLayer({ params, layout, weights, stats, log }, layer) {
    const matrices: Matrix[] = layout.names.layers[layer.index].experts!.flatMap((e, expert) => [
      { name: e.gate, expert, kind: 'gate' as const },
      { name: e.up, expert, kind: 'up' as const },
      { name: e.down, expert, kind: 'down' as const },
    ])
    let zeroed = 0, total = 0
    if (params.ratio === 0) return { removed: 0, total: 0 }
    for (const m of matrices) {
      const w = weights.get(m.name)
      const [rows, cols] = weights.shape(m.name)
      const scores = new Float64Array(w.length)
      let colScale: Float64Array | undefined
      if (params.score !== 'magnitude') {
        const norms = stats.inputNorms(layer.index)
        const weighted = params.score === 'moe-pruner'
        const src = m.kind === 'down' ? (weighted ? norms.downWeighted : norms.down) : weighted ? norms.gateUpWeighted : norms.gateUp
        colScale = Float64Array.from({ length: cols }, (_, j) => Math.sqrt(src[m.expert * cols + j]))
        if (colScale.every(v => v === 0)) {
          log.warn(`layer ${layer.index} expert ${m.expert}: no routed calibration tokens; ${m.kind} ranked by magnitude instead`)
          colScale = undefined
        }
      }
      for (let i = 0; i < w.length; i++) scores[i] = Math.abs(w[i]) * (colScale ? colScale[i % cols] : 1)
      if (params.pattern !== 'unstructured') {
        const [n, mm] = params.pattern.split(':').map(Number)
        for (let r = 0; r < rows; r++) {
          for (let c0 = 0; c0 + mm <= cols; c0 += mm) {
            const group = scores.subarray(r * cols + c0, r * cols + c0 + mm)
            for (const k of smallestIndices(group, n)) w[r * cols + c0 + k] = 0
          }
        }
      } else if (params.score === 'magnitude') {
        // One threshold per matrix: exactly floor(s · numel) entries, ties by flat index.
        for (const i of smallestIndices(scores, Math.floor(params.ratio * w.length))) w[i] = 0
      } else {
        // Wanda's comparison group is the output row.
        const per = Math.floor(params.ratio * cols)
        for (let r = 0; r < rows; r++) for (const k of smallestIndices(scores.subarray(r * cols, (r + 1) * cols), per)) w[r * cols + k] = 0
      }
      for (let i = 0; i < w.length; i++) if (w[i] === 0) zeroed++
      total += w.length
      weights.set(m.name, w)
    }
    return { removed: zeroed, total, notes: { targetedWeights: total } }
  },
  reference: { paper: 'Wanda arXiv 2306.11695; MoE-Pruner arXiv 2410.12013', code: 'locuslab/wanda lib/prune.py' },
})
