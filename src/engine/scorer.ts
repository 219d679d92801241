// Scores requests with a scoring graph: plans batches, runs them on a backend (an in-process session
// or the worker pool), and reassembles per-request log-probabilities in request order.
import { DEFAULTS } from '../defaults.ts'
import { fail } from '../errors.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { Device, Session } from '../ort/ort.ts'
import { openGraphSession, type GraphSessionSettings } from './graphSession.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { emptyResult, packBatch, planBatches, scatterBatch, validateRequest, type PackedBatch, type ScoreRequest, type ScoreResult } from './packing.ts'

/**
 * Runs one packed batch; returns the graph's logprobs and greedy flags, and (from the pool) the
 * session it ran in (ScoringPool.openingSeconds).
 */
export type BatchRunner = (batch: PackedBatch) => Promise<{ logprobs: Float32Array; greedy: Uint8Array; session?: string }>

export interface ScoreOptions {
  /** Padded tokens per batch (rows × width). */
  maxBatchTokens?: number
  /** Called after each batch with the number of requests done so far. */
  onProgress?: (done: number, total: number) => void
  /** Batches in flight at once (more than 1 only helps with a pool). */
  concurrency?: number
}

export const DEFAULT_BATCH_TOKENS = DEFAULTS.batchTokens

export async function scoreRequests(
  requests: readonly ScoreRequest[], run: BatchRunner, limits: { vocabSize: number; maxLength: number | null }, options: ScoreOptions = {},
): Promise<ScoreResult[]> {
  for (const r of requests) validateRequest(r, limits.vocabSize, limits.maxLength)
  const results = requests.map(emptyResult)
  const plan = planBatches(requests, options.maxBatchTokens ?? DEFAULT_BATCH_TOKENS)
  let done = 0
  let next = 0
  const worker = async () => {
    while (next < plan.length) {
      const indices = plan[next++]
      const batch = packBatch(requests, indices)
      const out = await run(batch)
      if (out.logprobs.length !== batch.scoreTargets.length) fail('NUMERIC_FAILURE', `The graph returned ${out.logprobs.length} scores for ${batch.scoreTargets.length} requested.`)
      scatterBatch(requests, results, batch, out.logprobs, out.greedy)
      done += indices.length
      options.onProgress?.(done, requests.length)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 1) }, worker))
  return results
}

export function batchFeeds(batch: PackedBatch) {
  const dims = [batch.rows, batch.width]
  return {
    input_ids: { type: 'int64' as const, data: batch.inputIds, dims },
    position_ids: { type: 'int64' as const, data: batch.positionIds, dims },
    branch_ids: { type: 'int64' as const, data: batch.branchIds, dims },
    score_positions: { type: 'int64' as const, data: batch.scorePositions, dims: [batch.scorePositions.length] },
    score_targets: { type: 'int64' as const, data: batch.scoreTargets, dims: [batch.scoreTargets.length] },
  }
}

export function sessionRunner(session: Session): BatchRunner {
  return async batch => {
    const out = await session.run(batchFeeds(batch), ['logprobs', 'greedy'])
    return { logprobs: out.logprobs.data as Float32Array, greedy: out.greedy.data as Uint8Array }
  }
}

/** An in-process scorer for one variant of a checkpoint. */
export interface LocalScorer {
  session: Session
  score(requests: readonly ScoreRequest[], options?: ScoreOptions): Promise<ScoreResult[]>
  release(): Promise<void>
}

export async function createLocalScorer(ckpt: Checkpoint, edits: VariantEdits, settings: GraphSessionSettings): Promise<LocalScorer> {
  const session = await openGraphSession(ckpt, edits, {}, settings)
  const run = sessionRunner(session)
  const limits = { vocabSize: ckpt.spec.vocabSize, maxLength: ckpt.spec.slidingWindow }
  return {
    session,
    score: (requests, options) => scoreRequests(requests, run, limits, options),
    release: () => session.release(),
  }
}
