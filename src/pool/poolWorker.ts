// Runs inside a piscina worker: receives a prepared variant's folder and a packed batch, returns the
// scores. Sessions are kept per variant (a small LRU), so a worker builds each variant's graph once;
// variants that only remove experts, or only change the same few weights, share a session (planFor).
// Errors come back as data, not thrown: structured clone turns a thrown HarnessError into a plain
// Error without its code, so the reply carries HarnessErrorData and pool.ts rebuilds the error.
import { threadId } from 'node:worker_threads'
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.ts'
import { expertMaskFeeds, isMaskOnly, sharedWeightInputs, weightInputFeeds, type GraphOptions } from '../onnx/moeGraph.ts'
import { openGraphSession, resolvePrecision } from '../engine/graphSession.ts'
import { emptyEdits, validateEdits, type VariantEdits } from '../edits/variantEdits.ts'
import { readVariantFiles } from '../edits/variantFolder.ts'
import { markVariantUsed } from '../edits/variantUse.ts'
import { batchFeeds } from '../engine/scorer.ts'
import type { PackedBatch } from '../engine/packing.ts'
import { errorData, fail, withContext, type HarnessErrorData } from '../errors.ts'
import type { Device, Feed, Session } from '../ort/ort.ts'
import { nearMapLimit } from '../util/memoryMaps.ts'

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
  /** When that build began (performance.now() milliseconds, see readyAt); meaningful when buildSeconds > 0. */
  buildFrom: number
  /** The session the task ran in (sessions' key: a variant folder, `masks:<model>`, `weights:<model>:<tensors>`). */
  session: string
  /**
   * When this worker had loaded its modules (onnxruntime, the graph builders) and could score, in
   * milliseconds of performance.now(), whose origin worker threads share with the main thread (the
   * process's start); with its first task only, null after.
   */
  readyAt: number | null
  /** The worker thread that ran the task (worker_threads threadId). */
  worker: number
  /** Seconds onnxruntime spent running the batch. */
  runSeconds: number
}

/** A failure inside the worker, as data (see the note at the top). */
export interface WorkerFailure {
  ok: false
  error: HarnessErrorData
}

export type WorkerResult = WorkerScores | WorkerFailure

// Evaluated after its imports. The pool starts its workers with its first batch, which waits for this.
let readyAt: number | null = performance.now()

const MAX_SESSIONS = 2
/**
 * Sessions by key: a variant folder, `masks:<model>` for the session its mask-only variants share, or
 * `weights:<model>:<tensors>` for the one its variants editing the same small set of tensors share.
 */
const sessions = new Map<string, Promise<Session>>()
const checkpoints = new Map<string, Checkpoint>()

/** How a variant folder is scored: which session, built how, and the extra feeds that select the variant in it. */
interface VariantPlan {
  key: string
  ckpt: Checkpoint
  /** The session's graph: the variant's own, or a shared one (expert masks or edited weights as inputs). */
  graph: { edits: VariantEdits; options: GraphOptions }
  /** The variant's feeds beyond the batch's (computed when first scored; weights are read from its folder). */
  extraFeeds: () => Record<string, Feed>
}
const plans = new Map<string, VariantPlan>()
/** The weight feeds of the variant scored last (up to sharedWeightInputs' byte bound as float32). */
let lastWeightFeeds: { variantDir: string; feeds: Record<string, Feed> } | undefined

/**
 * Which session a variant is scored in (tests/engine/scale-variants.test.ts and shared-weight-inputs.test.ts
 * check that each shared session scores exactly as the variant's own):
 * - variants that only remove experts (expert pruning at any ratio, and the base model itself) share one
 *   session per checkpoint built with expert masks as inputs (moeGraph.ts maskInputs): a second such
 *   variant costs no graph build and no session creation, only its masks. The masks add -inf exactly
 *   where a variant's own graph would, so the scores are the same.
 * - variants that only change a small set of weights (magnitude pruning / Wanda of a small model, at any
 *   ratio) share one session per (checkpoint, edited tensors) with those tensors as float32 inputs
 *   (moeGraph.ts sharedWeightInputs): a second ratio costs reading its edited tensors, no session.
 * - any other variant gets a session of its own, its edited tensors mapped from its folder.
 */
function planFor(variantDir: string, device: Device, allowNonfinite: readonly string[] = []): VariantPlan {
  const hit = plans.get(variantDir)
  if (hit) return hit
  const { modelDir, edits } = readVariantFiles(variantDir)
  markVariantUsed(variantDir) // the clock `cache prune --older-than` reads
  let ckpt = checkpoints.get(modelDir)
  // The main thread opened this checkpoint first and printed its warnings.
  if (!ckpt) checkpoints.set(modelDir, (ckpt = openCheckpoint(modelDir, { warn: () => {}, allowNonfinite: allowNonfinite.includes(modelDir) })))
  const c = ckpt
  let plan: VariantPlan
  let weights: string[] | undefined
  if (!c.baseEdits && isMaskOnly(edits)) {
    validateEdits(c.spec, edits)
    const feeds: Record<string, Feed> = {}
    for (const [name, data] of Object.entries(expertMaskFeeds(c.spec, edits))) feeds[name] = { type: 'float32', data, dims: [data.length] }
    plan = { key: `masks:${modelDir}`, ckpt: c, graph: { edits: emptyEdits(), options: { maskInputs: true } }, extraFeeds: () => feeds }
  } else if ((weights = sharedWeightInputs(c, edits, resolvePrecision(device)))) {
    const names = weights
    validateEdits(c.spec, edits)
    plan = {
      key: `weights:${modelDir}:${names.join('\n')}`, ckpt: c, graph: { edits: emptyEdits(), options: { weightInputs: names } },
      extraFeeds: () => {
        if (lastWeightFeeds?.variantDir !== variantDir) {
          lastWeightFeeds = undefined // released before the next variant's tensors are read
          const feeds: Record<string, Feed> = {}
          for (const [name, f] of Object.entries(weightInputFeeds(c, edits, names))) feeds[name] = { type: 'float32', ...f }
          lastWeightFeeds = { variantDir, feeds }
        }
        return lastWeightFeeds.feeds
      },
    }
  } else {
    plan = { key: variantDir, ckpt: c, graph: { edits, options: {} }, extraFeeds: () => ({}) }
  }
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

async function sessionFor(task: WorkerTask): Promise<{ session: Session; built: number; t0: number; plan: VariantPlan }> {
  // A build counts from here: opening the checkpoint in this worker (planFor, once per model) is part of it.
  const t0 = performance.now()
  const plan = planFor(task.variantDir, task.device, task.allowNonfinite)
  const hit = sessions.get(plan.key)
  if (hit) {
    sessions.delete(plan.key)
    sessions.set(plan.key, hit) // most recently used last
    return { session: await hit, built: 0, t0, plan }
  }
  const created = (async () => {
    const settings = { device: task.device, threads: task.threads }
    return openGraphSession(plan.ckpt, plan.graph.edits, plan.graph.options, settings)
  })()
  sessions.set(plan.key, created)
  while (sessions.size > MAX_SESSIONS) {
    const [oldest, s] = sessions.entries().next().value as [string, Promise<Session>]
    sessions.delete(oldest)
    void s.then(x => x.release(), () => {}) // a failed build has nothing to release
  }
  try {
    return { session: await created, built: (performance.now() - t0) / 1000, t0, plan }
  } catch (e) {
    sessions.delete(plan.key)
    plans.delete(task.variantDir)
    throw e
  }
}

async function scoreBatch(task: WorkerTask): Promise<WorkerScores> {
  // The phase tells a broken variant (every batch fails at 'session build') from a bad batch.
  const { session, built, t0: buildFrom, plan } = await sessionFor(task).catch(e => { throw withContext(e, { phase: 'session build' }) })
  let extraFeeds: Record<string, Feed>
  try {
    extraFeeds = plan.extraFeeds()
  } catch (e) {
    throw withContext(e, { phase: 'session build' }) // the variant's own tensors: every batch would fail alike
  }
  const t0 = performance.now()
  let out: Awaited<ReturnType<Session['run']>>
  try {
    checkTokens(task.batch, plan.ckpt.spec.vocabSize)
    out = await session.run({ ...batchFeeds(task.batch), ...extraFeeds }, ['logprobs', 'greedy'])
  } catch (e) {
    throw withContext(e, { phase: 'batch run' })
  }
  const ready = readyAt
  readyAt = null
  return { ok: true, logprobs: out.logprobs.data as Float32Array, greedy: out.greedy.data as Uint8Array, buildSeconds: built, buildFrom, session: plan.key, readyAt: ready, worker: threadId, runSeconds: (performance.now() - t0) / 1000 }
}

export default async function score(task: WorkerTask): Promise<WorkerResult> {
  try {
    return await scoreBatch(task)
  } catch (e) {
    // An unexpected exception keeps its message; its stack stays in this thread. A session that failed
    // to map its weights near vm.max_map_count reports an allocation failure: the limit is the cause.
    const error = errorData(e, 'SESSION_FAILED', {}, 'worker failed: ')
    const maps = error.code === 'SESSION_FAILED' ? nearMapLimit() : undefined
    return { ok: false, error: maps ? { ...error, code: 'MAP_LIMIT', message: `${error.message}; but ${maps}` } : error }
  }
}
