// Thread of cache-graph-race.test.ts: opens the checkpoint, waits at the barrier with the others,
// then asks the graph cache for the same variant graph and reports what it got.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { parentPort, workerData } from 'node:worker_threads'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { storedScoringGraph } from '../../src/onnx/graphStore.ts'
import { halvedLayer0 } from '../helpers/edits.ts'

const { model, root, barrier } = workerData as { model: string; root: string; barrier: SharedArrayBuffer }
const ckpt = openCheckpoint(model, { warn: () => {} })
const edits = halvedLayer0(ckpt)
const flag = new Int32Array(barrier)
Atomics.add(flag, 1, 1)
Atomics.wait(flag, 0, 0)
try {
  const g = storedScoringGraph(ckpt, edits, {}, root)
  const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex')
  parentPort!.postMessage({ ok: true, dir: g.dir, model: sha(g.model), derived: sha(fs.readFileSync(path.join(g.dir, 'derived.bin'))) })
} catch (e) {
  parentPort!.postMessage({ ok: false, error: String((e as Error)?.stack ?? e) })
}
