// Piscina worker entry: registers tsx's loader in this thread, then loads the TypeScript worker.
import { parentPort } from 'node:worker_threads'
import { register } from 'tsx/esm/api'

register()
const mod = await import('./poolWorker.ts')
// Tells the pool this thread's modules are instantiated (pool.ts WORKER_LOADED): terminating a worker
// while its ESM graph is still being instantiated aborts the whole process (a V8 fatal error).
parentPort?.postMessage({ moeHarnessWorkerLoaded: true })
export default mod.default
