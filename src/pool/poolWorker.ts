// Runs inside a piscina worker: receives a prepared variant's folder and a packed batch, returns the
// scores. Sessions are kept per variant (a small LRU), so a worker builds each variant's graph once;
// variants that only remove experts share their checkpoint's session (planFor).
// Errors come back as data, not thrown: structured clone turns a thrown HarnessError into a plain
// Error without its code, so the reply carries HarnessErrorData and pool.ts rebuilds the error.
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.ts'
import { expertMaskFeeds, isMaskOnly } from '../onnx/moeGraph.ts'
import { openGraphSession } from '../engine/graphSession.ts'
import { emptyEdits, validateEdits, type VariantEdits } from '../edits/variantEdits.ts'
import { readVariantFiles } from '../edits/variantFolder.ts'
import { batchFeeds } from '../engine/scorer.ts'
import type { PackedBatch } from '../engine/packing.ts'
import { errorData, fail, withContext, type HarnessErrorData } from '../errors.ts'
import type { Device, Feed, Session } from '../ort/ort.ts'

export interface WorkerTask {
  variantDir: string
  batch: PackedBatch
  device: Device
  threads: number
  /** Model folders opened with allowNonfinite (the sweep's --allow-nonfinite / config allowNonfinite). */
  allowNonfinite?: string[]
}

export interface WorkerScores {
  ok: true
  logprobs: Float32Array
  greedy: Uint8Array
  /** Seconds spent building a session for this task (0 when cached). */
  buildSeconds: number
  /** Seconds onnxruntime spent running the batch. */
  runSeconds: number
}

/** A failure inside the worker, as data (see the note at the top). */
export interface WorkerFailure {
  ok: false
  error: HarnessErrorData
}

export type WorkerResult = WorkerScores | WorkerFailure

const MAX_SESSIONS = 2
/** Sessions by key: a variant folder, or `masks:<model>` for the session its mask-only variants share. */
const sessions = new Map<string, Promise<Session>>()
const checkpoints = new Map<string, Checkpoint>()

/** How a variant folder is scored: which session, and the extra feeds that select the variant in it. */
interface VariantPlan {
  key: string
  ckpt: Checkpoint
  edits: VariantEdits
  shared: boolean
  extraFeeds: Record<string, Feed>
}
const plans = new Map<string, VariantPlan>()

/**
 * Variants that only remove experts (expert pruning at any ratio, and the base model itself) share one
 * session per checkpoint built with expert masks as inputs (moeGraph.ts maskInputs): a second such
 * variant costs no graph build and no session creation, only its masks. The masks add -inf exactly
 * where a variant's own graph would, so the scores are the same (tests/engine/scale-variants.test.ts).
 */
function planFor(variantDir: string, allowNonfinite: readonly string[] = []): VariantPlan {
  const hit = plans.get(variantDir)
  if (hit) return hit
  const { modelDir, edits } = readVariantFiles(variantDir)
  let ckpt = checkpoints.get(modelDir)
  // The main thread opened this checkpoint first and printed its warnings.
  if (!ckpt) checkpoints.set(modelDir, (ckpt = openCheckpoint(modelDir, { warn: () => {}, allowNonfinite: allowNonfinite.includes(modelDir) })))
  const shared = !ckpt.baseEdits && isMaskOnly(edits)
  const extraFeeds: Record<string, Feed> = {}
  if (shared) {
    validateEdits(ckpt.spec, edits)
    for (const [name, data] of Object.entries(expertMaskFeeds(ckpt.spec, edits))) extraFeeds[name] = { type: 'float32', data, dims: [data.length] }
  }
  const plan = { key: shared ? `masks:${modelDir}` : variantDir, ckpt, edits, shared, extraFeeds }
  plans.set(variantDir, plan)
  return plan
}

/**
 * Token ids and score targets within the vocabulary of the checkpoint this worker opened. The main
 * thread checks requests too (packing.ts); this guards the batch at the boundary, so a bad id is
 * TOKEN_OUT_OF_RANGE rather than onnxruntime's Gather failure.
 */
function checkTokens(batch: PackedBatch, vocabSize: number): void {
  const end = BigInt(vocabSize)
  for (const [field, ids] of [['input_ids', batch.inputIds], ['score_targets', batch.scoreTargets]] as const) {
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i]!
      if (t < 0n || t >= end) {
        fail('TOKEN_OUT_OF_RANGE', `Token id ${t} (${field}[${i}]) is outside the model's vocabulary 0..${vocabSize - 1}; check the ids or the tokenizer.`)
      }
    }
  }
}

async function sessionFor(task: WorkerTask): Promise<{ session: Session; built: number; plan: VariantPlan }> {
  const plan = planFor(task.variantDir, task.allowNonfinite)
  const hit = sessions.get(plan.key)
  if (hit) {
    sessions.delete(plan.key)
    sessions.set(plan.key, hit) // most recently used last
    return { session: await hit, built: 0, plan }
  }
  const t0 = performance.now()
  const created = (async () => {
    const settings = { device: task.device, threads: task.threads }
    return plan.shared ? openGraphSession(plan.ckpt, emptyEdits(), { maskInputs: true }, settings) : openGraphSession(plan.ckpt, plan.edits, {}, settings)
  })()
  sessions.set(plan.key, created)
  while (sessions.size > MAX_SESSIONS) {
    const [oldest, s] = sessions.entries().next().value as [string, Promise<Session>]
    sessions.delete(oldest)
    void s.then(x => x.release(), () => {}) // a failed build has nothing to release
  }
  try {
    return { session: await created, built: (performance.now() - t0) / 1000, plan }
  } catch (e) {
    sessions.delete(plan.key)
    plans.delete(task.variantDir)
    throw e
  }
}

async function scoreBatch(task: WorkerTask): Promise<WorkerScores> {
  // The phase tells a broken variant (every batch fails at 'session build') from a bad batch.
  const { session, built, plan } = await sessionFor(task).catch(e => { throw withContext(e, { phase: 'session build' }) })
  const t0 = performance.now()
  let out: Awaited<ReturnType<Session['run']>>
  try {
    checkTokens(task.batch, plan.ckpt.spec.vocabSize)
    out = await session.run({ ...batchFeeds(task.batch), ...plan.extraFeeds }, ['logprobs', 'greedy'])
  } catch (e) {
    throw withContext(e, { phase: 'batch run' })
  }
  return { ok: true, logprobs: out.logprobs.data as Float32Array, greedy: out.greedy.data as Uint8Array, buildSeconds: built, runSeconds: (performance.now() - t0) / 1000 }
}

export default async function score(task: WorkerTask): Promise<WorkerResult> {
  try {
    return await scoreBatch(task)
  } catch (e) {
    // An unexpected exception keeps its message; its stack stays in this thread.
    return { ok: false, error: errorData(e, 'SESSION_FAILED', {}, 'worker failed: ') }
  }
}
