// The sweep: plan cells, skip the complete ones, calibrate once per model, prepare each variant once,
// score cells in the worker pool, and write every finished cell atomically. Safe to kill at any
// moment: a rerun resumes and ends with every cell complete exactly once.
import { allowsNonfinite, type HarnessConfig } from '../config/defineConfig.ts'
import { methodFileHash } from '../methods/registry.ts'
import { weightResidency } from '../engine/graphSession.ts'
import { fitPoolToModels } from '../pool/memoryFit.ts'
import { tasksRequestBounds } from '../tasks/requestBound.ts'
import { checkDeviceAvailable } from '../ort/ort.ts'
import { createPool } from '../pool/pool.ts'
import { checkStorePath, ResultsStore } from '../store/resultsStore.ts'
import { cellFailure, cellLabel, runCell, storedError, type Cell, type CellContext, type CellFailure, type CellOutcome } from './cell.ts'
import { loadSweepInputs, type SweepInputs } from './inputs.ts'
import { CellLeases } from './leases.ts'
import { cellKey, shardOfCell, type Shard } from './plan.ts'
import { calibrateModels, checkVariantsWritable } from './variantSlots.ts'
import { checkModels, failRefusedModels } from './modelChecks.ts'
import { indexCells, storedCells } from './storedCells.ts'

// SCORING_VERSION and every key's derivation live in src/identity/keys.ts.
export { SCORING_VERSION } from '../identity/keys.ts'

export interface SweepOptions {
  config: HarnessConfig
  baseDir: string
  db: string
  /** The store is the config's `store` (not --db): its missing folder is created (ResultsStore createFolder). */
  dbFromConfig?: boolean
  shard?: Shard
  signal?: AbortSignal
  onProgress?: (p: SweepProgress) => void
  log?: (line: string) => void
  /**
   * Seconds a claimed cell stays reserved without a heartbeat (default 60). Cooperating sweeps on one
   * store take over the cells of a process that died once its leases expire.
   */
  leaseSeconds?: number
  /**
   * Cell keys (plan.ts cellKey) not to plan at all: `sweep --slurm` passes the cells its main store
   * already holds, so a shard never scores them again in its own file.
   */
  skipCells?: ReadonlySet<string>
}

export interface SweepProgress { done: number; total: number; label: string }

export type { CellFailure }

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
  /**
   * Of `skipped`, the cells whose result is that of a cell this sweep scored: the same variant content
   * (e.g. every method at ratio 0 is the unpruned model) on the same task, stored once.
   */
  sameAsScoredHere: number
  /** This process's lease owner id (host:pid:random). */
  owner: string
  /** The pool that ran: workers × intra-op threads, after fitting the requested workers in memory (memoryFit.ts). */
  pool: { workers: number; threads: number }
  /**
   * The failure of this machine that stopped the sweep (errors.ts isMachineFailure: MAP_LIMIT;
   * the first cell that met it, its error's message naming the fix), else undefined. It is stored as no
   * cell's or variant's failure and not counted in `failed`; as after an interrupt, no cell started
   * after it, the cells scored are stored, and a rerun after the fix scores the others.
   */
  stopped?: CellFailure
}

export async function runSweep(options: SweepOptions): Promise<SweepSummary> {
  const { config } = options
  const log = options.log ?? (() => {})
  // Wall-clock seconds per phase. Scoring and session builds happen in the workers and are summed
  // over them; `workerBusy` divides by the worker count, comparable with `total`.
  const timings = { calibration: 0, transform: 0, sessionBuild: 0, scoring: 0, database: 0, cellWall: 0, workerBusy: 0, total: 0 }
  const t0 = performance.now()
  // The store path first (a folder, a missing folder, a foreign file): a bad --db was refused only after
  // the pool's 'pool: ...' line had been printed, as if the sweep had started.
  checkStorePath(options.db, '--db', options.dbFromConfig)
  const loaded = await loadSweepInputs(config, options.baseDir, log) // everything cheap is validated first
  const mine = (cell: Cell) => {
    const key = cellKey(cell.slot.spec, cell.data.task.name)
    return (!options.shard || shardOfCell(cell.slot.spec, cell.data.task.name, options.shard.count) === options.shard.index) && !options.skipCells?.has(key)
  }
  // Before any calibration, method or graph build; but only when a cell is left to score: a GPU sweep
  // whose every cell the store holds (merged shards, rerun on a login node to finish the report) uses no device.
  if (loaded.device !== 'cpu' && await cellsLeft(loaded, options.db, mine)) checkDeviceAvailable(loaded.device)
  // Workers × threads chosen so the largest model (mapped once) and every worker's largest batch fit
  // in the memory available; fewer workers than requested when they would not (src/pool/memoryFit.ts).
  // Rows as long as the requests the tasks' selected documents make (cell.ts scores at the model's context),
  // and no more rows than one task makes requests (a cell scores one task's requests together).
  const { longestRequest, mostRequests } = tasksRequestBounds(loaded.tasks, name => loaded.taskData.get(name)!.docs)
  const fit = fitPoolToModels({ models: [...loaded.models.values()], batchTokens: config.batchTokens, longestRequest, mostRequests, requestedWorkers: loaded.workers, requestedThreads: config.pool.threads, weightsInMemory: weightResidency() === 'memory' })
  log(fit.reason)
  const inputs: SweepInputs = { ...loaded, workers: fit.workers, threads: fit.threads }
  const store = new ResultsStore(options.db, { createFolder: options.dbFromConfig })
  const allowNonfinite = [...inputs.models].filter(([name]) => allowsNonfinite(config, name)).map(([, ckpt]) => ckpt.dir)
  const pool = createPool({ workers: inputs.workers, threads: inputs.threads, device: inputs.device, allowNonfinite })
  // Stops the sweep as the user's interrupt does, when a cell meets a limit of this machine (tally).
  const machineStop = new AbortController()
  const signal = options.signal ? AbortSignal.any([options.signal, machineStop.signal]) : machineStop.signal
  const leases = new CellLeases(store, 1000 * (options.leaseSeconds ?? 60))
  const summary: SweepSummary = { cells: 0, skipped: 0, completed: 0, failed: 0, interrupted: false, timings, tokensScored: 0, failures: [], scoredElsewhere: 0, sameAsScoredHere: 0, owner: leases.owner, pool: { workers: inputs.workers, threads: inputs.threads } }
  let sweepId = 0
  try {
    // Cells of one variant run back to back (workers keep its session).
    const cells = inputs.slots.flatMap(slot => inputs.tasks.map(t => ({ slot, data: inputs.taskData.get(t.name)! }))).filter(mine)
    const slots = inputs.slots.filter(s => cells.some(c => c.slot === s))
    // Before any calibration: a broken model (NaN weights, folder gone) fails its own cells only.
    const refused = checkModels(slots, inputs.models, log, inputs.device)
    describeInputs(store, inputs, new Set(refused.filter(f => !f.fingerprinted).map(f => f.name)))
    summary.cells = cells.length
    sweepId = store.startSweep(JSON.stringify({ config, shard: options.shard ?? null }), cells.length)
    failRefusedModels(refused, store)
    let done = 0
    const report = (label: string) => options.onProgress?.({ done, total: cells.length, label })
    const ctx: CellContext = { inputs, store, pool, leases, timings, signal, onScoring: cell => report(cellLabel(cell)), onPreparing: report, log }
    await checkVariantsWritable(slots, ctx)
    await calibrateModels(slots, ctx, timings, log, report)

    const scoredHere = new Set<number>()
    const settle = async (cell: Cell, retried: boolean): Promise<boolean> => {
      const counted = tally(summary, cell, await runCell(cell, ctx), retried, log, scoredHere)
      if (summary.stopped && !machineStop.signal.aborted) machineStop.abort()
      if (counted === 'deferred') return false
      if (counted) {
        done++
        report(counted.label)
      }
      return true
    }
    await schedule(cells, Math.max(1, inputs.workers), settle, leases.retryDelayMs(), signal)
    summary.interrupted = Boolean(options.signal?.aborted)
  } finally {
    leases.close()
    timings.sessionBuild = pool.buildSeconds()
    timings.scoring = pool.runSeconds()
    timings.workerBusy = (timings.sessionBuild + timings.scoring) / inputs.workers
    timings.total = (performance.now() - t0) / 1000
    await pool.close()
    if (sweepId) store.finishSweep(sweepId, summary.completed + summary.skipped, summary.failed, { ...timings, interrupted: summary.interrupted, ...(summary.stopped ? { stoppedBy: summary.stopped.code } : {}) })
    store.close()
  }
  return summary
}

/** Whether some of this sweep's cells (`mine`) are not stored complete in `db` (any doubt, such as a store that does not open, counts as work). */
async function cellsLeft(inputs: SweepInputs, db: string, mine: (cell: Cell) => boolean): Promise<boolean> {
  try {
    const cells = (await indexCells(inputs)).filter(c => mine(c.cell))
    const states = storedCells(cells, inputs, db)
    return cells.some(c => states.get(c.key)?.state !== 'complete')
  } catch {
    return true
  }
}

/**
 * Adds a cell's outcome to the summary: the progress label when the cell is finished, null when it
 * was not counted (aborted), 'deferred' when it must be tried again later.
 */
function tally(summary: SweepSummary, cell: Cell, outcome: CellOutcome, retried: boolean, log: (line: string) => void, scoredHere: Set<number>): { label: string } | null | 'deferred' {
  const label = cellLabel(cell)
  switch (outcome.kind) {
    case 'deferred': return 'deferred'
    case 'aborted': return null
    case 'machine':
      // Not counted: the cell is left for the rerun, as an interrupted one (the first such cell is the one reported).
      if (!summary.stopped) {
        summary.stopped = cellFailure(cell, outcome.error)
        log(`sweep stopping: ${label} met a limit of this machine (${outcome.error.code}, not stored as a failure); no new cell starts`)
      }
      return null
    case 'variantFailed':
      summary.failed++
      summary.failures.push(cellFailure(cell, outcome.error))
      return { label: `failed ${label}` }
    case 'stored':
      if (outcome.run.status === 'failed') {
        summary.failed++
        summary.failures.push(cellFailure(cell, storedError(outcome.run)))
      } else summary.skipped++
      // Held by this sweep's own lane while it scored (a cell of the same content), not by another process.
      if (scoredHere.has(outcome.run.run_id)) {
        if (outcome.run.status !== 'failed') summary.sameAsScoredHere++
      } else if (retried) summary.scoredElsewhere++
      return { label }
    case 'scored':
      scoredHere.add(outcome.runId)
      summary.tokensScored += outcome.tokens
      if (outcome.error) {
        summary.failed++
        const failure = cellFailure(cell, outcome.error)
        summary.failures.push(failure)
        log(`cell failed: ${label}: ${failure.error}`)
      } else summary.completed++
      return { label }
  }
}

/**
 * Runs the cells in `lanes` overlapping lanes (one per worker, so the pool never idles while the main
 * thread builds requests or writes results), then retries the deferred ones (held by another process
 * or lane) until they are stored elsewhere or their lease expires and this process takes them over.
 */
async function schedule(cells: Cell[], lanes: number, settle: (cell: Cell, retried: boolean) => Promise<boolean>, retryDelayMs: number, signal?: AbortSignal): Promise<void> {
  let next = 0
  let deferred: Cell[] = []
  const lane = async () => {
    while (next < cells.length && !signal?.aborted) {
      const cell = cells[next++]
      if (!(await settle(cell, false))) deferred.push(cell)
    }
  }
  await Promise.all(Array.from({ length: lanes }, lane))
  while (deferred.length && !signal?.aborted) {
    const retry = deferred
    deferred = []
    for (const cell of retry) if (!(await settle(cell, true))) deferred.push(cell)
    if (deferred.length) await new Promise(res => setTimeout(res, retryDelayMs))
  }
}

/** What the report needs to stand alone: the models, the methods planned and the tasks. */
function describeInputs(store: ResultsStore, inputs: SweepInputs, unreadable: ReadonlySet<string>): void {
  for (const [name, ckpt] of inputs.models) {
    if (unreadable.has(name)) continue // no fingerprint to store it under (checkModels): its cells fail unstored
    store.upsertModel({
      model_id: ckpt.fingerprint(), name, path: ckpt.dir, architecture: ckpt.spec.architecture, config_json: JSON.stringify(ckpt.config),
      total_params: [...ckpt.tensors.values()].reduce((s, t) => s + t.shape.reduce((x, y) => x * y, 1), 0),
    })
  }
  for (const method of new Set(inputs.slots.flatMap(s => s.planned.status === 'planned' ? [s.planned.plan.method] : []))) {
    store.saveMethodInfo({ name: method.name, family: method.family, description: method.description, params_json: JSON.stringify(method.params), reference_json: method.reference ? JSON.stringify(method.reference) : null, code_hash: methodFileHash(method.name) })
  }
  for (const t of inputs.tasks) store.saveTaskInfo({ name: t.name, version: t.version, kind: t.kind, description: t.description, metrics_json: JSON.stringify(t.metrics), primary_metric: t.primaryMetric })
}
