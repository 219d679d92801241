// Method worker entry (applyInWorker.ts): registers tsx's loader in this thread, then runs the
// TypeScript side, which answers the main thread's requests.
import { register } from 'tsx/esm/api'

register()
await import('./applyWorker.ts')
