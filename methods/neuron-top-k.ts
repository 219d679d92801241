import { defineMethod, neuronsKept, p } from '../src/index.ts'

export default defineMethod({
  name: 'neuron-top-k',
  description: 'Mixture of Neuron Experts (MoNE-N): per token and routed expert, keep the ceil(rho·F) intermediate neurons with the largest |act(W_gate x)| and zero the rest, without rescaling; rho = 1 - ratio. Router and memory unchanged; saves compute only.',
  family: 'neuron-sparsity',
  params: {
    ratio: p.ratio({ description: 'fraction of an activated expert\'s neurons dropped per token (1 - rho)' }),
  },
  apply({ params, layout, runtime }) {
    if (params.ratio === 0) return { achievedRatio: 0 }
    let kept = 0, total = 0
    for (const layer of layout.layers) {
      const rho = 1 - params.ratio
      runtime.neuronTopK(layer.index, rho)
      kept += neuronsKept(rho, layer.expertFfn)
      total += layer.expertFfn
    }
    return { achievedRatio: 1 - kept / total, notes: { rho: 1 - params.ratio } }
  },
  reference: { paper: 'Mixture of Neuron Experts, arXiv 2510.05781 (no official code)' },
})
