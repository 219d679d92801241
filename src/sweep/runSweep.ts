// The sweep: plan cells, skip the complete ones, calibrate once per model, prepare each variant once,
// score cells in the worker pool, and write every finished cell atomically. Safe to kill at any
// moment: a rerun resumes and ends with every cell complete exactly once.
import crypto from 'node:crypto'
import os from 'node:os'
import path from 'node:path'
import type { HarnessConfig } from '../config/defineConfig.ts'
import { defaultThreads } from '../defaults.ts'
import { errorData, fail, formatError, HarnessError, isHarnessErrorData, withContext, type ErrorCode, type HarnessErrorData } from '../errors.ts'
import { defaultCalibration, type CalibrationSpec } from '../calibration/source.ts'
import type { StatNeed } from '../calibration/stats.ts'
import { scoreRequests } from '../engine/scorer.ts'
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.ts'
import { defaultDataDir } from '../paths.ts'
import { createPool } from '../runtime/pool.ts'
import { ORT_VERSION, type Device } from '../runtime/ort.ts'
import { calibrationKey, harnessHome } from '../calibration/cache.ts'
import { ResultsStore, type RunKey } from '../store/resultsStore.ts'
import type { TaskDefinition } from '../tasks/defineTask.ts'
import { evaluateTask, type TaskEvaluation } from '../tasks/evaluate.ts'
import { loadTaskDocs, selectDocs, subsetKey, type SubsetSpec } from '../tasks/registry.ts'
import { editsContentHash, failedVariantKey, HARNESS_VERSION, runKey, runKeyText, scoringKey, variantFolderName } from '../identity/keys.ts'
import { calibrateFor, planVariant, prepareVariant, variantId, type PlannedVariant, type PreparedVariant } from '../variants/prepare.ts'
import { isVariantFolder, publishVariantFolder } from '../edits/variantFolder.ts'
import { methodFileHash } from '../methods/registry.ts'
import { cellKey, expandVariants, resolveSweepTasks, shardOf, type Shard, type VariantSpec } from './plan.ts'

// SCORING_VERSION and every key's derivation live in src/identity/keys.ts.
export { SCORING_VERSION } from '../identity/keys.ts'

export interface SweepOptions {
  config: HarnessConfig
  baseDir: string
  db: string
  shard?: Shard
  signal?: AbortSignal
  onProgress?: (p: SweepProgress) => void
  log?: (line: string) => void
  /**
   * Seconds a claimed cell stays reserved without a heartbeat (default 60). Cooperating sweeps on one
   * store take over the cells of a process that died once its leases expire.
   */
  leaseSeconds?: number
}

export interface SweepProgress { done: number; total: number; label: string }

export type CellFailure = { cell: string; error: string } & HarnessErrorData

/** A stored failure's structure: error_json, or for rows from before it existed, the code before the first ':' of the text. */
function storedError(error: string | null, errorJson: string | null): HarnessErrorData {
  if (errorJson) {
    try {
      const d: unknown = JSON.parse(errorJson)
      if (isHarnessErrorData(d)) return d
    } catch { /* fall back to the text */ }
  }
  const m = /^([A-Z][A-Z0-9_]*): ([\s\S]*)$/.exec(error ?? '')
  return m ? { code: m[1] as ErrorCode, message: m[2]! } : { code: 'INTERNAL', message: error ?? 'failed' }
}

export interface SweepSummary {
  cells: number
  skipped: number
  completed: number
  failed: number
  interrupted: boolean
  timings: Record<string, number>
  tokensScored: number
  /**
   * Which cells failed and why: `cell` is 'model method params task', `error` the one-line
   * `CODE (method m, phase p, task t): message`, and the error's fields beside them.
   */
  failures: CellFailure[]
  /** Cells another process was scoring when this one reached them, then found complete. */
  scoredElsewhere: number
  /** This process's lease owner id (host:pid:random). */
  owner: string
}

interface VariantState {
  spec: VariantSpec
  variantId?: string
  contentHash?: string
  plan?: PlannedVariant
  error?: HarnessErrorData
  dir?: string
  preparing?: Promise<void>
}

/**
 * Whether a lease's owner (host:pid:random) is a process of this machine that has exited: its cells
 * are taken over at once instead of after the lease expires (a rerun after a crash does not wait).
 */
function holderIsGone(holder: string): boolean {
  const [host, pid] = holder.split(':')
  if (host !== os.hostname() || !/^\d+$/.test(pid ?? '')) return false
  try {
    process.kill(Number(pid), 0)
    return false
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH'
  }
}


/** The content hash of a prepared variant's edits (src/identity/keys.ts editsContentHash). */
export function contentHash(prepared: PreparedVariant): string {
  return editsContentHash(prepared.edits)
}

export async function runSweep(options: SweepOptions): Promise<SweepSummary> {
  const { config } = options
  const log = options.log ?? (() => {})
  // Wall-clock seconds per phase. Scoring and session builds happen in the workers and are summed
  // over them; `workerBusy` divides by the worker count, comparable with `total`.
  const timings = { calibration: 0, transform: 0, sessionBuild: 0, scoring: 0, database: 0, cellWall: 0, workerBusy: 0, total: 0 }
  const t0 = performance.now()
  const device: Device = config.device
  const workers = config.pool.workers
  const threads = config.pool.threads ?? defaultThreads(workers)

  // ---- validate everything before any expensive work
  const tasks = await resolveSweepTasks(config)
  const subset: SubsetSpec = config.subset
  const dataDir = config.dataDir ? path.resolve(options.baseDir, config.dataDir) : defaultDataDir()
  // The data file and its sha256 enter every run's key: other content re-scores, a copy elsewhere does not.
  const taskDocs = new Map<string, { task: TaskDefinition; docs: { index: number; doc: unknown }[]; file: string; sha256: string }>()
  for (const task of tasks) {
    const loaded = await loadTaskDocs(task, dataDir)
    taskDocs.set(task.name, { task, docs: selectDocs(task, loaded.docs, subset), file: loaded.file, sha256: loaded.sha256 })
  }
  const specs = await expandVariants(config, options.baseDir)
  const models = new Map<string, Checkpoint>()
  for (const s of specs) if (!models.has(s.model)) models.set(s.model, openCheckpoint(s.modelDir))
  const states: VariantState[] = []
  for (const spec of specs) {
    const ckpt = models.get(spec.model)!
    try {
      states.push({ spec, plan: await planVariant(ckpt, spec.method, spec.params) })
    } catch (e) {
      if (!(e instanceof HarnessError) || !['METHOD_INFEASIBLE'].includes(e.code)) throw withContext(e, { method: spec.method, phase: 'plan' })
      states.push({ spec, error: errorData(e, 'METHOD_INFEASIBLE', { method: spec.method, phase: 'plan' }) })
      log(`skipping ${spec.model}/${spec.method} ${JSON.stringify(spec.params)}: ${e.message}`)
    }
  }

  const store = new ResultsStore(options.db)
  const pool = createPool({ workers, threads, device })
  const subsetText = subsetKey(subset)
  const owner = `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`
  const startedAt = new Date().toISOString()
  const summary: SweepSummary = { cells: 0, skipped: 0, completed: 0, failed: 0, interrupted: false, timings, tokensScored: 0, failures: [], scoredElsewhere: 0, owner }
  const leaseMs = 1000 * (options.leaseSeconds ?? 60)
  // Leases this process holds (one per run key), kept alive by a heartbeat while the sweep runs.
  const held = new Set<string>()
  const heartbeat = setInterval(() => { if (held.size) store.heartbeatLeases(owner, leaseMs) }, Math.max(200, leaseMs / 4))
  heartbeat.unref()
  const heldKeys = new Map<string, RunKey>()
  let sweepId = 0
  try {
    for (const [name, ckpt] of models) {
      const a = ckpt.spec
      store.upsertModel({ model_id: ckpt.fingerprint(), name, path: ckpt.dir, architecture: a.architecture, config_json: JSON.stringify(ckpt.config), total_params: [...ckpt.tensors.values()].reduce((s, t) => s + t.shape.reduce((x, y) => x * y, 1), 0) })
    }
    for (const method of new Set(states.filter(s => s.plan).map(s => s.plan!.method))) {
      store.saveMethodInfo({ name: method.name, family: method.family, description: method.description, params_json: JSON.stringify(method.params), reference_json: method.reference ? JSON.stringify(method.reference) : null, code_hash: methodFileHash(method.name) })
    }
    for (const t of tasks) store.saveTaskInfo({ name: t.name, version: t.version, kind: t.kind, description: t.description, metrics_json: JSON.stringify(t.metrics), primary_metric: t.primaryMetric })
    const cellRunKey = (ckpt: Checkpoint, hash: string, task: TaskDefinition): RunKey => runKey({
      modelId: ckpt.fingerprint(), contentHash: hash, task: task.name, taskVersion: task.version, subset: subsetText,
      scoringKey: scoringKey({ maxLength: ckpt.spec.maxPositions, device, ortVersion: ORT_VERSION }), dataSha256: taskDocs.get(task.name)!.sha256,
    })
    const mine = (s: VariantState, task: TaskDefinition) => !options.shard || shardOf(cellKey(s.spec, task.name), options.shard.count) === options.shard.index
    const cells = states.flatMap(s => tasks.filter(t => mine(s, t)).map(t => ({ state: s, task: t })))
    summary.cells = cells.length
    sweepId = store.startSweep(JSON.stringify({ config, shard: options.shard ?? null }), cells.length)

    // Variants already prepared in an earlier run are known by id; the rest get calibrated together.
    const calibration = (ckpt: Checkpoint): CalibrationSpec => {
      const d = defaultCalibration(ckpt.spec.maxPositions)
      return { source: config.calibration.source, field: config.calibration.field, sequences: config.calibration.sequences ?? d.sequences, length: config.calibration.length ?? d.length, seed: config.calibration.seed }
    }
    for (const [name, ckpt] of models) {
      const pending = states.filter(s => s.spec.model === name && s.plan && cells.some(c => c.state === s))
      const needs = [...new Set(pending.flatMap(s => s.plan!.onePassNeeds))] as StatNeed[] // sequential variants calibrate on their own
      if (needs.length === 0) continue
      const tc = performance.now()
      const result = (await calibrateFor(ckpt, needs, { calibration: calibration(ckpt), device, threads: workers * threads, onCalibration: (d, t) => options.onProgress?.({ done: 0, total: cells.length, label: `calibrating ${name} ${d}/${t}` }) })
        .catch(e => { throw withContext(e, { phase: 'calibrate' }) }))!
      timings.calibration += (performance.now() - tc) / 1000
      log(`calibration for ${name}: ${result.fromCache ? 'cached' : 'computed'} (${needs.join(', ')})`)
      const routing = result.data.routing
      store.saveCalibration({
        model_id: ckpt.fingerprint(), calibration_key: result.key, info_json: JSON.stringify(result.data.info),
        routing_load_json: routing ? JSON.stringify(Object.entries(routing).map(([layer, r]) => ({ layer: Number(layer), load: Array.from(r.count, c => c / Math.max(1, r.tokens)) }))) : null,
      })
    }

    let done = 0
    const report = (label: string) => options.onProgress?.({ done, total: cells.length, label })
    const variantDir = (ckpt: Checkpoint, hash: string) => path.join(harnessHome(), 'variants', variantFolderName(ckpt.fingerprint(), hash))

    const prepare = (s: VariantState): Promise<void> => (s.preparing ??= prepareOnce(s))
    const saveFailedVariant = (s: VariantState, ckpt: Checkpoint) => store.saveVariant({
      variant_id: failedVariantKey(s.spec), model_id: ckpt.fingerprint(),
      method: s.spec.method, params_json: JSON.stringify(s.plan?.params ?? s.spec.params), ratio: Number(s.spec.params.ratio), achieved_ratio: null,
      content_hash: null, accounting_json: null, report_json: null, warnings_json: null, calibration_json: null, transform_seconds: null, status: 'failed',
      error: formatError(s.error!), error_json: JSON.stringify(s.error),
    })
    const prepareOnce = async (s: VariantState): Promise<void> => {
      const ckpt = models.get(s.spec.model)!
      if (s.error) {
        saveFailedVariant(s, ckpt) // infeasible at planning time: recorded so the report lists it
        return
      }
      const tt = performance.now()
      // A variant prepared by an earlier run is known by its id; it is rebuilt only if its files are gone.
      const id = variantId(ckpt, s.plan!, s.plan!.needs.length ? await calibrationKey(ckpt, calibration(ckpt)) : null)
      const known = store.variant(id)
      if (known?.status === 'ready' && known.content_hash && isVariantFolder(variantDir(ckpt, known.content_hash))) {
        s.variantId = id
        s.contentHash = known.content_hash
        s.dir = variantDir(ckpt, known.content_hash)
        return
      }
      try {
        const prepared = await prepareVariant(ckpt, s.plan!, { calibration: calibration(ckpt), device, threads: workers * threads })
        s.variantId = prepared.variantId
        s.contentHash = contentHash(prepared)
        s.dir = variantDir(ckpt, s.contentHash)
        publishVariantFolder(s.dir, ckpt.dir, prepared.edits, n => ckpt.tensors.get(n)!.dtype)
        const td = performance.now()
        store.saveVariant({
          variant_id: prepared.variantId, model_id: ckpt.fingerprint(), method: prepared.method, params_json: JSON.stringify(prepared.params),
          ratio: Number(prepared.params.ratio), achieved_ratio: prepared.report.achievedRatio, content_hash: s.contentHash,
          accounting_json: JSON.stringify(prepared.accounting), report_json: JSON.stringify(prepared.report), warnings_json: JSON.stringify(prepared.warnings),
          calibration_json: JSON.stringify(prepared.calibration), transform_seconds: prepared.transformSeconds, status: 'ready', error: null,
        })
        timings.database += (performance.now() - td) / 1000
      } catch (e) {
        s.error = errorData(e, 'METHOD_FAILED', { method: s.spec.method, phase: 'prepare' })
        saveFailedVariant(s, ckpt)
      }
      timings.transform += (performance.now() - tt) / 1000
    }

    const cellName = (cell: { state: VariantState; task: TaskDefinition }) => `${cell.state.spec.model} ${cell.state.spec.method} ${JSON.stringify(cell.state.spec.params)} ${cell.task.name}`
    const cellFailure = (cell: { state: VariantState; task: TaskDefinition }, error: HarnessErrorData): CellFailure => ({ cell: cellName(cell), error: formatError(error), ...error })
    /** Scores one cell unless it is complete or another lane/process holds it ('deferred': try again later). */
    const runCell = async (cell: { state: VariantState; task: TaskDefinition }, deferredBefore = false): Promise<'done' | 'deferred'> => {
      const s = cell.state
      const ckpt = models.get(s.spec.model)!
      const label = `${s.spec.model} ${s.spec.method} r=${s.spec.params.ratio} ${cell.task.name}`
      if (options.signal?.aborted) return 'done'
      await prepare(s)
      if (s.error) {
        summary.failed++
        summary.failures.push(cellFailure(cell, s.error))
        done++
        report(`failed ${label}`)
        return 'done'
      }
      const key = cellRunKey(ckpt, s.contentHash!, cell.task)
      const lease = runKeyText(key)
      if (held.has(lease)) return 'deferred' // another lane of this process is scoring the same run (identical variants)
      const claim = store.claimCell(key, owner, leaseMs, startedAt, holderIsGone)
      if (claim === 'busy') return 'deferred'
      if (claim === 'complete') {
        const existing = store.run(key)!
        if (existing.status === 'failed') {
          summary.failed++
          summary.failures.push(cellFailure(cell, storedError(existing.error, existing.error_json)))
        } else summary.skipped++
        if (deferredBefore) summary.scoredElsewhere++
        done++
        report(label)
        return 'done'
      }
      held.add(lease)
      heldKeys.set(lease, key)
      try {
        await scoreCell(cell, key, label)
      } finally {
        held.delete(lease)
        heldKeys.delete(lease)
        store.releaseCell(key, owner)
      }
      return 'done'
    }

    const scoreCell = async (cell: { state: VariantState; task: TaskDefinition }, key: RunKey, label: string): Promise<void> => {
      const s = cell.state
      const ckpt = models.get(s.spec.model)!
      report(label)
      const { task, docs, file: dataFile } = taskDocs.get(cell.task.name)!
      const ts = performance.now()
      let evaluation: TaskEvaluation | undefined
      let error: HarnessErrorData | null = null
      try {
        evaluation = await evaluateTask(task, docs, {
          tokenizer: ckpt.tokenizer(), maxLength: ckpt.spec.maxPositions,
          score: requests => scoreRequests(requests, pool.runner(s.dir!), { vocabSize: ckpt.spec.vocabSize, maxLength: ckpt.spec.slidingWindow }, { maxBatchTokens: config.batchTokens, concurrency: workers + 1, signal: options.signal }),
        })
        for (const sample of evaluation.samples) {
          if (sample.lls.some(v => !Number.isFinite(v))) fail('NUMERIC_FAILURE', `non-finite log-likelihood for document ${sample.doc}`)
        }
      } catch (e) {
        if (options.signal?.aborted) return
        error = errorData(e, 'INTERNAL', { method: s.spec.method, phase: 'score', task: cell.task.name })
      }
      timings.cellWall += (performance.now() - ts) / 1000
      if (options.signal?.aborted) return
      const td = performance.now()
      const metrics = evaluation ? Object.entries(evaluation.metrics).map(([metric, m]) => ({ metric, value: m!.value, stderr: m!.stderr, higher_is_better: m!.higherIsBetter ? 1 : 0 })) : []
      const samples = evaluation ? evaluation.samples.map(x => ({
        doc: x.doc, gold_json: JSON.stringify(x.gold), lls_json: JSON.stringify(x.lls), lls_unconditional_json: x.llsUnconditional ? JSON.stringify(x.llsUnconditional) : null,
        greedy_json: JSON.stringify(x.greedy), preds_json: JSON.stringify(x.preds), counts_json: x.counts ? JSON.stringify(x.counts) : null,
      })) : []
      store.saveRun({
        ...key, data_file: dataFile, harness_version: HARNESS_VERSION, ort_version: ORT_VERSION, device, status: error ? 'failed' : 'complete',
        error: error && formatError(error), error_json: error && JSON.stringify(error),
        docs: docs.length, seconds: (performance.now() - ts) / 1000, tokens_processed: evaluation?.tokens.processed ?? 0, tokens_per_choice: evaluation?.tokens.perChoiceEquivalent ?? 0,
      }, metrics, samples)
      timings.database += (performance.now() - td) / 1000
      summary.tokensScored += evaluation?.tokens.processed ?? 0
      if (error) {
        summary.failed++
        summary.failures.push(cellFailure(cell, error))
        log(`cell failed: ${label}: ${formatError(error)}`)
      } else summary.completed++
      done++
      report(label)
    }

    // Cells of one variant run back to back (workers keep its session); a few cells overlap so the
    // pool never idles while the main thread builds requests or writes results.
    const queue = [...cells].sort((a, b) => states.indexOf(a.state) - states.indexOf(b.state))
    let next = 0
    let deferred: typeof queue = []
    const lane = async () => {
      while (next < queue.length && !options.signal?.aborted) {
        const cell = queue[next++]
        if ((await runCell(cell)) === 'deferred') deferred.push(cell)
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, workers) }, lane))
    // Cells another process (or lane) held: wait until they are stored, or until their lease expires
    // because that process died, then take them over.
    while (deferred.length && !options.signal?.aborted) {
      const retry = deferred
      deferred = []
      for (const cell of retry) if ((await runCell(cell, true)) === 'deferred') deferred.push(cell)
      if (deferred.length) await new Promise(res => setTimeout(res, Math.min(1000, Math.max(100, leaseMs / 4))))
    }
    summary.interrupted = Boolean(options.signal?.aborted)
  } finally {
    clearInterval(heartbeat)
    for (const key of heldKeys.values()) store.releaseCell(key, owner)
    timings.sessionBuild = pool.buildSeconds()
    timings.scoring = pool.runSeconds()
    timings.workerBusy = (timings.sessionBuild + timings.scoring) / workers
    timings.total = (performance.now() - t0) / 1000
    await pool.close()
    if (sweepId) store.finishSweep(sweepId, summary.completed + summary.skipped, summary.failed, { ...timings, interrupted: summary.interrupted })
    store.close()
  }
  return summary
}
