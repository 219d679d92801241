// Piscina worker entry: registers tsx's loader in this thread, then loads the TypeScript worker.
import { register } from 'tsx/esm/api'

register()
const mod = await import('./poolWorker.ts')
export default mod.default
