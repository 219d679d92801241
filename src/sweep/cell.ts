// One cell of a sweep (variant × task) as a unit: prepare its variant, claim its run key, score it in
// the pool, record run + metrics + samples in one transaction. The scheduler (runSweep.ts) only
// counts what each cell returns.
import { scoreRequests, type BatchRunner } from '../engine/scorer.ts'
import { errorData, fail, formatError, isHarnessErrorData, isMachineFailure, type ErrorCode, type HarnessErrorData } from '../errors.ts'
import { HARNESS_VERSION, runKey, scoringKey, type RunKey } from '../identity/keys.ts'
import { ORT_VERSION } from '../ort/ort.ts'
import type { ScoringPool } from '../pool/pool.ts'
import type { RunRow } from '../store/resultsStore.ts'
import { evaluateTask, type TaskEvaluation } from '../tasks/evaluate.ts'
import { subsetKey } from '../tasks/registry.ts'
import type { TaskData } from './inputs.ts'
import type { CellLeases } from './leases.ts'
import { prepared, type PrepareContext, type VariantSlot } from './variantSlots.ts'

export interface Cell { slot: VariantSlot; data: TaskData }

export type CellFailure = { cell: string; error: string } & HarnessErrorData

/** What became of a cell: the scheduler counts it (deferred cells are tried again later). */
export type CellOutcome =
  | { kind: 'aborted' }
  | { kind: 'deferred' }
  | { kind: 'variantFailed'; error: HarnessErrorData }
  | { kind: 'stored'; run: RunRow }
  | { kind: 'scored'; error: HarnessErrorData | null; tokens: number; runId: number }
  /** Its variant's preparation or its scoring met a limit of this machine (errors.ts isMachineFailure): nothing stored, the sweep stops. */
  | { kind: 'machine'; error: HarnessErrorData }

export interface CellContext extends PrepareContext {
  pool: ScoringPool
  leases: CellLeases
  signal?: AbortSignal
  timings: PrepareContext['timings'] & { cellWall: number }
  /** Called as scoring starts (progress label). */
  onScoring(cell: Cell): void
}

/** 'model method params task', as failures name a cell. */
export const cellName = (c: Cell) => `${c.slot.spec.model} ${c.slot.spec.method} ${JSON.stringify(c.slot.spec.params)} ${c.data.task.name}`
/** 'model method r=ratio task', as progress labels name a cell. */
export const cellLabel = (c: Cell) => `${c.slot.spec.model} ${c.slot.spec.method} r=${c.slot.spec.params.ratio} ${c.data.task.name}`
export const cellFailure = (c: Cell, error: HarnessErrorData): CellFailure => ({ cell: cellName(c), error: formatError(error), ...error })

/** Runs one cell unless it is complete, its variant failed, or another lane/process holds it. */
export async function runCell(cell: Cell, ctx: CellContext): Promise<CellOutcome> {
  if (ctx.signal?.aborted) return { kind: 'aborted' }
  const variant = await prepared(cell.slot, ctx)
  if (variant.status === 'failed') return { kind: 'variantFailed', error: variant.error }
  if (variant.status === 'machine') return { kind: 'machine', error: variant.error }
  // Interrupted while its variant was prepared: the variant is kept for the rerun, the cell does not start.
  if (ctx.signal?.aborted) return { kind: 'aborted' }
  const key = cellRunKey(cell, variant, ctx)
  const claim = ctx.leases.claim(key)
  if (claim === 'busy' || claim === 'held-here') return { kind: 'deferred' }
  if (claim === 'complete') return { kind: 'stored', run: ctx.store.run(key)! }
  try {
    ctx.onScoring(cell)
    const scored = await score(cell, variant, ctx)
    // Not the cell's failure: stored, it would be shown as the method's; the rerun after the fix scores it.
    if (scored.error && isMachineFailure(scored.error)) return { kind: 'machine', error: scored.error }
    const runId = record(cell, key, scored, ctx)
    return { kind: 'scored', error: scored.error, tokens: scored.evaluation?.tokens.processed ?? 0, runId }
  } finally {
    ctx.leases.release(key)
  }
}

/** The run key a cell is stored under, once its variant's content hash is known (also how other modules find a cell in a store). */
export function cellRunKey(cell: Cell, variant: { contentHash: string }, ctx: Pick<CellContext, 'inputs'>): RunKey {
  const { ckpt } = cell.slot
  const { config, device } = ctx.inputs
  return runKey({
    modelId: ckpt.fingerprint(), contentHash: variant.contentHash, task: cell.data.task.name, taskVersion: cell.data.task.version,
    subset: subsetKey(config.subset), scoringKey: scoringKey({ maxLength: ckpt.spec.maxPositions, device, ortVersion: ORT_VERSION }), dataSha256: cell.data.sha256,
  })
}

/**
 * `seconds`: the cell's wall time (requests, scoring, metrics); `sessionSeconds`: how much of it the
 * pool's workers spent getting ready for it, starting or building the sessions its batches ran in
 * (ScoringPool.openingSeconds); 0 when every worker already had them.
 */
interface Scored { evaluation: TaskEvaluation | undefined; error: HarnessErrorData | null; seconds: number; sessionSeconds: number }

/**
 * Builds the requests (main thread), scores them in the pool and computes the metrics. Not stopped by
 * the sweep's signal: Ctrl-C promises that the cells being scored finish (and runCell stores them),
 * so a cell once started is stored; dropping it after waiting for it stored nothing (0 runs after a
 * 42 s wait in one trial). A second Ctrl-C exits at once, and the store's transaction keeps no half.
 */
async function score(cell: Cell, variant: { dir: string }, ctx: CellContext): Promise<Scored> {
  const { ckpt, spec } = cell.slot
  const { config, workers } = ctx.inputs
  const ts = performance.now()
  const runner = ctx.pool.runner(variant.dir)
  const sessions = new Set<string>()
  const run: BatchRunner = async batch => {
    const out = await runner(batch)
    if (out.session) sessions.add(out.session)
    return out
  }
  let evaluation: TaskEvaluation | undefined
  let error: HarnessErrorData | null = null
  try {
    evaluation = await evaluateTask(cell.data.task, cell.data.docs, {
      tokenizer: ckpt.tokenizer(), maxLength: ckpt.spec.maxPositions,
      score: requests => scoreRequests(requests, run, { vocabSize: ckpt.spec.vocabSize, maxLength: ckpt.spec.slidingWindow }, { maxBatchTokens: config.batchTokens, concurrency: workers + 1 }),
    })
    logNotes(evaluation.notes, cell, ctx)
    for (const sample of evaluation.samples) {
      if (sample.lls.some(v => !Number.isFinite(v))) fail('NUMERIC_FAILURE', `non-finite log-likelihood for document ${sample.doc}`)
    }
    // A perplexity's samples carry no per-choice log-likelihoods: its metric is where NaN/Inf shows
    // (NaN weights allowed by allowNonfinite). The cell fails like a multiple-choice one, the sweep goes on.
    for (const [metric, m] of Object.entries(evaluation.metrics)) {
      if (m && !Number.isFinite(m.value)) fail('NUMERIC_FAILURE', `metric ${metric} is ${m.value}: the model's outputs are not finite (NaN/Inf weights, allowed by allowNonfinite, or an overflow); fix the checkpoint or drop allowNonfinite to have it refused when opened`)
    }
  } catch (e) {
    evaluation = undefined // a failed run stores no metrics or samples (a NaN metric would not even fit the table)
    error = errorData(e, 'INTERNAL', { method: spec.method, phase: 'score', task: cell.data.task.name })
  }
  const te = performance.now()
  const seconds = (te - ts) / 1000
  ctx.timings.cellWall += seconds
  return { evaluation, error, seconds, sessionSeconds: Math.min(seconds, ctx.pool.openingSeconds(sessions, ts, te)) }
}

// A note (token_perplexity left out of a short corpus) is the same for every variant of a model: logged once per sweep.
const loggedNotes = new WeakMap<CellContext, Set<string>>()
function logNotes(notes: readonly string[], cell: Cell, ctx: CellContext): void {
  const seen = loggedNotes.get(ctx) ?? new Set<string>()
  loggedNotes.set(ctx, seen)
  for (const note of notes) {
    const line = `warning: ${cell.slot.spec.model}: ${note}`
    if (!seen.has(line)) (ctx.log ?? (l => process.stderr.write(`${l}\n`)))(line)
    seen.add(line)
  }
}

/** Writes the run (complete, or failed with its error), its metrics and samples in one transaction; returns its run_id. */
function record(cell: Cell, key: RunKey, scored: Scored, ctx: CellContext): number {
  const { evaluation, error } = scored
  const td = performance.now()
  const metrics = evaluation ? Object.entries(evaluation.metrics).map(([metric, m]) => ({ metric, value: m!.value, stderr: m!.stderr, higher_is_better: m!.higherIsBetter ? 1 : 0 })) : []
  const samples = evaluation ? evaluation.samples.map(x => ({
    doc: x.doc, gold_json: JSON.stringify(x.gold), lls_json: JSON.stringify(x.lls), lls_unconditional_json: x.llsUnconditional ? JSON.stringify(x.llsUnconditional) : null,
    greedy_json: JSON.stringify(x.greedy), preds_json: JSON.stringify(x.preds), counts_json: x.counts ? JSON.stringify(x.counts) : null,
  })) : []
  const runId = ctx.store.saveRun({
    ...key, data_file: cell.data.file, harness_version: HARNESS_VERSION, ort_version: ORT_VERSION, device: ctx.inputs.device, status: error ? 'failed' : 'complete',
    error: error && formatError(error), error_json: error && JSON.stringify(error),
    docs: cell.data.docs.length, seconds: scored.seconds, session_seconds: scored.sessionSeconds, tokens_processed: evaluation?.tokens.processed ?? 0, tokens_per_choice: evaluation?.tokens.perChoiceEquivalent ?? 0,
  }, metrics, samples)
  ctx.timings.database += (performance.now() - td) / 1000
  return runId
}

/** A stored failure's structure: error_json, or for rows from before it existed, the code before the first ':' of the text. */
export function storedError(run: Pick<RunRow, 'error' | 'error_json'>): HarnessErrorData {
  if (run.error_json) {
    try {
      const d: unknown = JSON.parse(run.error_json)
      if (isHarnessErrorData(d)) return d
    } catch { /* fall back to the text */ }
  }
  const m = /^([A-Z][A-Z0-9_]*): ([\s\S]*)$/.exec(run.error ?? '')
  return m ? { code: m[1] as ErrorCode, message: m[2]! } : { code: 'INTERNAL', message: run.error ?? 'failed' }
}
