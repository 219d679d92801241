import { defineMethod, p } from '../src/index.ts'
import hcsmoe from './hc-smoe.ts'
import msmoe from './m-smoe.ts'

// Deprecated: kept so existing configs and stored results keep working (issue 12). New work uses
// the two method files it delegates to.
export default defineMethod({
  name: 'expert-merging',
  description: 'Deprecated alias: use m-smoe or hc-smoe. Runs M-SMoE (algorithm=m-smoe, now with the official global allocation by default) or HC-SMoE (algorithm=hc-smoe) with the same parameters those methods take.',
  family: 'expert-merging',
  params: {
    ratio: p.ratio({ description: 'share of routed experts merged away: groups = E - floor(ratio · E) per layer (on average with global allocation)' }),
    algorithm: p.enum(['m-smoe', 'hc-smoe'], { default: 'hc-smoe', description: 'M-SMoE (arXiv 2310.01334) or HC-SMoE (arXiv 2410.08589)' }),
    allocation: p.enum(['global', 'layer'], { default: 'global', description: 'm-smoe only: M-SMoE\'s global allocation by usage frequency, or uniform groups per layer' }),
    align: p.enum(['none', 'weight-matching'], { default: 'none', description: 'm-smoe only: permute each member\'s neurons onto the dominant expert (Hungarian weight matching) before averaging' }),
    distance: p.enum(['euclidean', 'cosine'], { default: 'euclidean', description: 'hc-smoe only: distance between mean outputs (cosine is REAP\'s re-implementation)' }),
  },
  needs: params => (params.ratio === 0 ? [] : params.algorithm === 'hc-smoe' ? ['routing', 'expertOutputsAll'] : ['routing']),
  validate(params, layout) {
    if (params.algorithm === 'hc-smoe') hcsmoe.validate!({ ratio: params.ratio, distance: params.distance }, layout)
    else msmoe.validate!({ ratio: params.ratio, allocation: params.allocation, align: params.align }, layout)
  },
  apply(ctx) {
    ctx.log.warn(`expert-merging is deprecated; use the method ${ctx.params.algorithm} (same parameters, without 'algorithm')`)
    const { params } = ctx
    if (params.algorithm === 'hc-smoe') return hcsmoe.apply!({ ...ctx, params: { ratio: params.ratio, distance: params.distance } })
    return msmoe.apply!({ ...ctx, params: { ratio: params.ratio, allocation: params.allocation, align: params.align } })
  },
  reference: { paper: 'M-SMoE arXiv 2310.01334; HC-SMoE arXiv 2410.08589', code: 'see methods/m-smoe.ts and methods/hc-smoe.ts' },
})
