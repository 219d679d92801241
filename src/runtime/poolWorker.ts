// Runs inside a piscina worker: receives a prepared variant's folder and a packed batch, returns the
// scores. Sessions are kept per variant (a small LRU), so a worker builds each variant's graph once.
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.ts'
import { buildScoringGraph } from '../onnx/moeGraph.ts'
import { readVariantFiles } from '../variants/variantFiles.ts'
import { batchFeeds } from '../engine/scorer.ts'
import type { PackedBatch } from '../engine/packing.ts'
import { createSession, type Device, type Session } from './ort.ts'

export interface WorkerTask {
  variantDir: string
  batch: PackedBatch
  device: Device
  threads: number
}

export interface WorkerResult {
  logprobs: Float32Array
  greedy: Uint8Array
  /** Seconds spent building a session for this task (0 when cached). */
  buildSeconds: number
  /** Seconds onnxruntime spent running the batch. */
  runSeconds: number
}

const MAX_SESSIONS = 2
const sessions = new Map<string, Promise<Session>>()
const checkpoints = new Map<string, Checkpoint>()

async function sessionFor(task: WorkerTask): Promise<{ session: Session; built: number }> {
  const hit = sessions.get(task.variantDir)
  if (hit) {
    sessions.delete(task.variantDir)
    sessions.set(task.variantDir, hit) // most recently used last
    return { session: await hit, built: 0 }
  }
  const t0 = performance.now()
  const created = (async () => {
    const { modelDir, edits } = readVariantFiles(task.variantDir)
    let ckpt = checkpoints.get(modelDir)
    // The main thread opened this checkpoint first and printed its warnings.
    if (!ckpt) checkpoints.set(modelDir, (ckpt = openCheckpoint(modelDir, { warn: () => {} })))
    return createSession(buildScoringGraph(ckpt, edits), { device: task.device, threads: task.threads })
  })()
  sessions.set(task.variantDir, created)
  while (sessions.size > MAX_SESSIONS) {
    const [oldest, s] = sessions.entries().next().value as [string, Promise<Session>]
    sessions.delete(oldest)
    void s.then(x => x.release())
  }
  try {
    return { session: await created, built: (performance.now() - t0) / 1000 }
  } catch (e) {
    sessions.delete(task.variantDir)
    throw e
  }
}

export default async function score(task: WorkerTask): Promise<WorkerResult> {
  const { session, built } = await sessionFor(task)
  const t0 = performance.now()
  const out = await session.run(batchFeeds(task.batch), ['logprobs', 'greedy'])
  return { logprobs: out.logprobs.data as Float32Array, greedy: out.greedy.data as Uint8Array, buildSeconds: built, runSeconds: (performance.now() - t0) / 1000 }
}
