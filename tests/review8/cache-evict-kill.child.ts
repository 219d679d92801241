// Child of cache-evict-kill.test.ts: stores one new graph with a cache limit of 0 GB, so that its
// eviction removes every older entry; the parent kills it (SIGKILL) while it does.
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { storedScoringGraph } from '../../src/onnx/graphStore.ts'
import { scaledExpert } from './cache-evict-kill.edits.ts'

const [model, root, factor] = process.argv.slice(2) as [string, string, string]
process.env.MOE_HARNESS_GRAPH_CACHE_GB = '0'
const ckpt = openCheckpoint(model, { warn: () => {} })
const edits = scaledExpert(ckpt, Number(factor))
process.stdout.write('go\n')
storedScoringGraph(ckpt, edits, {}, root)
process.stdout.write('done\n')
