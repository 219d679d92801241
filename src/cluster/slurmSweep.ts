// `moe-harness sweep --slurm`: plan the cells, write the array script, submit the shards whose cells
// are incomplete, follow them, and merge the finished shard files into the main store. The shard
// files, the script, the job record and the logs live in one folder next to the store.
import fs from 'node:fs'
import path from 'node:path'
import type { HarnessConfig } from '../config/defineConfig.ts'
import { isHarnessError } from '../errors.ts'
import { ResultsStore } from '../store/resultsStore.ts'
import { formatBytes } from '../util/bytes.ts'
import { writeOutputFile, type FileRule, type OutputContext } from '../util/outputPaths.ts'
import { loadSweepInputs, type SweepInputs } from '../sweep/inputs.ts'
import { cellKey, planCells, type PlannedCell } from '../sweep/plan.ts'
import { indexCells, storedCells, type IndexedCell, type StoredCellState } from '../sweep/storedCells.ts'
import { renderSbatchScript } from './sbatchScript.ts'
import { pathsOutsideMount, renderK8sManifest, type JobPath } from './k8sManifest.ts'
import { arraySpec, logDir, shardDb, skipCellsFile, slurmLog, type ClusterOptions, type ShardJob, type SkipCells } from './jobSpec.ts'
import { finalState, queuedTasks, submitArray } from './slurm.ts'
import { memoryRequest, taskMemoryNeed, type MemoryRequest } from './memoryRequest.ts'
import { givenK8sMemory, k8sMemory } from './k8sMemory.ts'
import { weightResidency } from '../engine/graphSession.ts'

export interface ClusterPlanOptions {
  config: HarnessConfig
  baseDir: string
  configFile: string
  /** The main store the shards merge into. */
  db: string
  cluster: ClusterOptions
  /** Requested shards (array tasks); capped at the number of cells. */
  shards: number
  /** Sweep flags every shard gets (e.g. --workers 2 --threads 1). */
  sweepArgs: string[]
  /** Where a warning about the plan goes (a memory request below the need); default stderr, as `warning: …`. */
  warn?: (line: string) => void
}

export interface ClusterPlan {
  job: ShardJob
  /** The cells to run: every planned cell the main store does not hold complete. */
  cells: PlannedCell[]
  /** Cells to run per shard. */
  cellsPerShard: number[]
  /** Planned cells in all, and the keys of those the main store already holds complete (not run again). */
  total: number
  held: Set<string>
  /**
   * The sweep's inputs (tasks, documents, opened models), for the memory each task or pod needs; absent
   * for a manifest whose models cannot be opened here (`unopened`).
   */
  inputs?: SweepInputs
  /** Why the inputs could not be opened here (manifest only: its pods may see models this machine does not). */
  unopened?: string
  /** The sweep's inputs and cells, to look cells up in shard files (absent for a plan that ignores the store). */
  index?: { inputs: SweepInputs; cells: IndexedCell[] }
  /** What each array task asks Slurm for in memory, and why (absent for a plan that ignores the store: the Kubernetes manifest's pods request k8sMemory.ts's figure). */
  memory?: MemoryRequest
}

/** Where a store's cluster files go: `<store folder>/slurm-<store name>/`. */
export function clusterStateDir(db: string): string {
  return path.join(path.dirname(path.resolve(db)), `slurm-${path.basename(db, path.extname(db))}`)
}

/**
 * Plans the shards. The models and task data are opened (the memory a task needs comes from them).
 * With `readStore` (the Slurm path) the cells the main store already holds complete are left out, as a
 * local sweep skips them; the shard count is still fixed by all planned cells, so shard files keep
 * their names from one run to the next. Without it (the Kubernetes manifest) every cell is planned:
 * its pods get no --skip-cells and write fresh shard files that the user merges by hand, so they run
 * every cell of their shard, and the store is not read.
 */
export async function planClusterJob(o: ClusterPlanOptions, readStore = true): Promise<ClusterPlan> {
  const probe = await planCells(o.config, o.baseDir, 1)
  const shards = Math.max(1, Math.min(o.shards, probe.length))
  const all = await planCells(o.config, o.baseDir, shards)
  const held = new Set<string>()
  let inputs: SweepInputs | undefined
  let unopened: string | undefined
  if (readStore) inputs = await loadSweepInputs(o.config, o.baseDir, () => {})
  else {
    // Only for the pods' memory: a manifest whose models live only on the pods' volume is still written
    // (with the given size unchecked, or no request and a warning), as it was before the request existed.
    try {
      inputs = await loadSweepInputs(o.config, o.baseDir, () => {})
    } catch (e) {
      if (!isHarnessError(e)) throw e
      unopened = e.message
    }
  }
  let index: ClusterPlan['index']
  if (readStore && inputs) {
    index = { inputs, cells: await indexCells(inputs) }
    for (const [key, s] of storedCells(index.cells, inputs, o.db)) if (s.state === 'complete') held.add(key)
  }
  const keyOf = (c: PlannedCell) => cellKey(c, c.task)
  const cells = all.filter(c => !held.has(keyOf(c)))
  const cellsPerShard = Array.from({ length: shards }, (_, i) => cells.filter(c => c.shard === i).length)
  const job: ShardJob = {
    shards, workDir: o.baseDir, bin: path.resolve(import.meta.dirname, '..', '..', 'bin', 'moe-harness.mjs'),
    config: path.resolve(o.configFile), stateDir: clusterStateDir(o.db), sweepArgs: o.sweepArgs,
  }
  let memory: MemoryRequest | undefined
  if (index) {
    // The array tasks inherit this environment (sbatch --export=ALL), MOE_HARNESS_WEIGHTS and SBATCH_MEM_* included.
    memory = memoryRequest(taskMemoryNeed(index.inputs, weightResidency() === 'memory'), o.cluster, { workers: o.config.pool.workers, threads: o.config.pool.threads }, process.env)
    if (memory.warning) (o.warn ?? (line => process.stderr.write(`warning: ${line}\n`)))(memory.warning)
  }
  return { job, cells, cellsPerShard, total: all.length, held, inputs, unopened, index, memory }
}

export function sbatchScriptFor(plan: ClusterPlan, o: ClusterPlanOptions): string {
  return renderSbatchScript(plan.job, o.cluster, { cells: plan.cells.length, held: plan.held.size, cellsPerShard: plan.cellsPerShard, store: path.resolve(o.db), memory: plan.memory })
}

/** The paths besides its own the job reads: the models and the data folder, as the config resolves them. */
export function jobPaths(o: ClusterPlanOptions): JobPath[] {
  return [
    ...Object.entries(o.config.models).map(([name, dir]) => ({ what: `model '${name}'`, path: path.resolve(o.baseDir, dir) })),
    ...(o.config.dataDir ? [{ what: 'dataDir', path: path.resolve(o.baseDir, o.config.dataDir) }] : []),
  ]
}

/**
 * The manifest of `plan` (planned without the store), its pods requesting the memory one worker needs
 * or the user's cluster.memory; a size below the need is warned about through `o.warn` (default stderr).
 */
export function k8sManifestFor(plan: ClusterPlan, o: ClusterPlanOptions): string {
  const warn = o.warn ?? (line => process.stderr.write(`warning: ${line}\n`))
  if (!plan.inputs) {
    if (o.cluster.memory) return renderK8sManifest(plan.job, o.cluster, jobPaths(o), givenK8sMemory(o.cluster.memory))
    warn(`the pods get no memory request: the sweep's models could not be opened here to size it (${plan.unopened}); pass --memory <size> (e.g. 32Gi) or cluster.memory.`)
    return renderK8sManifest(plan.job, o.cluster, jobPaths(o))
  }
  // Weights mapped: the pods do not inherit this process's environment (MOE_HARNESS_WEIGHTS included).
  const memory = k8sMemory(taskMemoryNeed(plan.inputs, false), taskMemoryNeed(plan.inputs, true), o.cluster.memory, o.config.pool.workers)
  if (memory.warning) warn(memory.warning)
  return renderK8sManifest(plan.job, o.cluster, jobPaths(o), memory)
}

/** The plan as text: one line per shard with its cells. */
export function describePlan(plan: ClusterPlan, db: string): string {
  const lines = [`${plan.cells.length} cells in ${plan.job.shards} shards` + (plan.held.size ? ` (${plan.held.size} of ${plan.total} cells already complete in ${db}, not run again):` : ':')]
  const m = plan.memory
  if (m) {
    lines.unshift(`memory per array task: ${m.option ? `${m.option} (requested by moe-harness: ` : `${m.user!.given} (as given; `}` +
      `one worker needs ${formatBytes(m.need.bytes)})${m.warning ? ', BELOW THE NEED: see the warning on stderr' : ''}`)
  }
  for (let i = 0; i < plan.job.shards; i++) {
    const mine = plan.cells.filter(c => c.shard === i)
    lines.push(`  shard ${i} (${mine.length} cells)${mine.length ? ':' : ''}`)
    for (const c of mine) lines.push(`    ${c.model} ${c.method} ${JSON.stringify(c.params)} ${c.task}`)
  }
  return lines.join('\n')
}

/** The states of shard `index`'s cells to run, in its own file. */
function shardCells(plan: ClusterPlan, index: number): Map<string, StoredCellState> {
  const { inputs, cells } = plan.index!
  const mine = new Set(plan.cells.filter(c => c.shard === index).map(c => cellKey(c, c.task)))
  try {
    return storedCells(cells.filter(c => mine.has(c.key)), inputs, shardDb(plan.job, index))
  } catch {
    return new Map([...mine].map(k => [k, { state: 'missing' as const }])) // unreadable or half-written: run it again
  }
}

/** A shard is complete when its file holds every cell it has to run complete. */
export function shardComplete(plan: ClusterPlan, index: number): boolean {
  return plan.cellsPerShard[index] === 0 || [...shardCells(plan, index).values()].every(s => s.state === 'complete')
}

export interface ShardFailure {
  shard: number; jobId: string; state: string; exitCode: string; log: string
  /** The shard's failed cells ('model method params task') with the error, as the sweep summary lists them. */
  failedCells: { cell: string; error: string }[]
  /** Cells of the shard with no result at all (the task ended before reaching them). */
  notRun: number
}

export interface SlurmSweepResult {
  stateDir: string
  script: string
  shards: number
  /** Planned cells, those the store already held complete, and those this run had to run. */
  cells: { total: number; held: number; toRun: number }
  /** Shards complete before this run (not resubmitted). */
  alreadyComplete: number[]
  /** Shards submitted by this run, and the job id. */
  submitted: number[]
  jobId: string | null
  /** Shards of an earlier submission still queued that this run followed instead of resubmitting. */
  followed: number[]
  complete: number[]
  failed: ShardFailure[]
  merged: { runs: number; skipped: number }
  interrupted: boolean
}

export interface SlurmProgress { done: number; running: number; pending: number; failed: number; total: number }

interface JobRecord { shards: number; tasks: { shard: number; jobId: string }[] }

/**
 * Submits the incomplete shards (or follows those of an earlier submission still queued), polls
 * squeue every `pollMs` until none is queued, then merges every complete shard into `o.db`.
 * A shard whose file does not hold its whole plan when its task leaves the queue is a failure,
 * reported with Slurm's end state and its log. Errors: SLURM_UNAVAILABLE, SLURM_REFUSED (from
 * slurm.ts), OUTPUT_UNSAFE for a state file it did not write, STORE_* from the merge.
 */
export async function runSlurmSweep(o: ClusterPlanOptions & {
  pollMs: number
  signal?: AbortSignal
  log: (line: string) => void
  onProgress?: (p: SlurmProgress) => void
}): Promise<SlurmSweepResult> {
  const plan = await planClusterJob({ ...o, warn: o.warn ?? (line => o.log(`warning: ${line}`)) })
  const { job } = plan
  const n = job.shards
  fs.mkdirSync(path.join(job.stateDir, 'shards'), { recursive: true })
  fs.mkdirSync(logDir(job.stateDir), { recursive: true })
  // Only files this command wrote are ever replaced in the state folder.
  const ctx: OutputContext = { source: `the cluster folder of ${o.db}`, databases: [o.db] }
  const scriptRule: FileRule = { what: 'Slurm script', example: 'sweep.sbatch', isOurs: f => /^#!\/bin\/bash\n# moe-harness .* sweep as a Slurm array job/.test(fs.readFileSync(f, 'utf8')) }
  const recordRule: FileRule = { what: 'Slurm job record', example: 'job.json', isOurs: f => { try { return Array.isArray(JSON.parse(fs.readFileSync(f, 'utf8')).tasks) } catch { return false } } }
  const scriptFile = path.join(job.stateDir, 'sweep.sbatch')
  writeOutputFile(scriptFile, ctx, scriptRule, tmp => fs.writeFileSync(tmp, sbatchScriptFor(plan, o), { mode: 0o755 }))
  const recordFile = path.join(job.stateDir, 'job.json')

  const result: SlurmSweepResult = { stateDir: job.stateDir, script: scriptFile, shards: n, cells: { total: plan.total, held: plan.held.size, toRun: plan.cells.length }, alreadyComplete: [], submitted: [], jobId: null, followed: [], complete: [], failed: [], merged: { runs: 0, skipped: 0 }, interrupted: false }
  // Tasks of an earlier submission that are still queued are followed, not submitted twice.
  const tracked = new Map<number, string>()
  let record: JobRecord | undefined
  try {
    record = JSON.parse(fs.readFileSync(recordFile, 'utf8')) as JobRecord
  } catch { /* no earlier submission (or an unreadable record): nothing to follow */ }
  if (record?.shards === n && Array.isArray(record.tasks)) {
    for (const jobId of new Set(record.tasks.map(t => t.jobId))) {
      const queued = queuedTasks(jobId) ?? new Map()
      for (const t of record.tasks) if (t.jobId === jobId && queued.has(t.shard)) tracked.set(t.shard, jobId)
    }
  }
  result.followed = [...tracked.keys()].sort((a, b) => a - b)
  const todo: number[] = []
  for (let i = 0; i < n; i++) {
    if (tracked.has(i)) continue
    if (shardComplete(plan, i)) result.alreadyComplete.push(i)
    else todo.push(i)
  }
  if (todo.length) {
    // The array tasks skip the cells the main store already holds (the script passes this file).
    const skipRule: FileRule = { what: 'list of complete cells', example: 'complete-cells.json', isOurs: f => { try { return Array.isArray(JSON.parse(fs.readFileSync(f, 'utf8')).cells) } catch { return false } } }
    const skip: SkipCells = { store: path.resolve(o.db), cells: [...plan.held].sort() }
    writeOutputFile(skipCellsFile(job.stateDir), ctx, skipRule, tmp => fs.writeFileSync(tmp, JSON.stringify(skip, null, 2) + '\n'))
    const jobId = submitArray(scriptFile, arraySpec(todo))
    result.jobId = jobId
    result.submitted = todo
    for (const i of todo) tracked.set(i, jobId)
    o.log(`slurm: submitted shards ${arraySpec(todo)} of 0-${n - 1} as job ${jobId}` +
      (result.alreadyComplete.length ? ` (shards ${arraySpec(result.alreadyComplete)} already complete)` : '') + `; script ${scriptFile}`)
  } else if (!tracked.size) {
    o.log(plan.cells.length === 0
      ? `slurm: all ${plan.total} cells already complete in ${o.db} (all ${n} shards already complete); nothing to submit`
      : `slurm: all ${n} shards already complete; nothing to submit`)
  }
  if (result.followed.length) o.log(`slurm: following shards ${arraySpec(result.followed)} still queued from an earlier submission`)
  const jobRecord: JobRecord = { shards: n, tasks: [...tracked].map(([shard, jobId]) => ({ shard, jobId })) }
  writeOutputFile(recordFile, ctx, recordRule, tmp => fs.writeFileSync(tmp, JSON.stringify(jobRecord, null, 2) + '\n'))

  // Follow until no tracked task is queued any more.
  const finished = new Set<number>()
  let failedSoFar = 0
  while (finished.size < tracked.size) {
    if (o.signal?.aborted) {
      result.interrupted = true
      break
    }
    const states = new Map<number, string>()
    let known = true
    for (const jobId of new Set(tracked.values())) {
      const q = queuedTasks(jobId)
      if (!q) { known = false; break } // squeue hiccup: ask again next round
      for (const [shard, jid] of tracked) if (jid === jobId && q.has(shard)) states.set(shard, q.get(shard)!)
    }
    if (known) {
      for (const [shard, jobId] of tracked) {
        if (finished.has(shard) || states.has(shard)) continue
        finished.add(shard)
        const cellStates = [...shardCells(plan, shard)]
        if (cellStates.every(([, s]) => s.state === 'complete')) result.complete.push(shard)
        else {
          const end = finalState(jobId, shard)
          const names = new Map(plan.index!.cells.map(c => [c.key, c.name]))
          const failure: ShardFailure = {
            shard, jobId, state: end?.state ?? 'UNKNOWN', exitCode: end?.exitCode ?? '?', log: slurmLog(job.stateDir, jobId, shard),
            failedCells: cellStates.flatMap(([key, s]) => (s.state === 'failed' ? [{ cell: names.get(key)!, error: s.error }] : [])),
            notRun: cellStates.filter(([, s]) => s.state === 'missing').length,
          }
          result.failed.push(failure)
          failedSoFar++
          o.log(`slurm: shard ${shard} (job ${jobId}_${shard}) ended ${failure.state} (exit ${failure.exitCode}) with cells incomplete; log: ${failure.log}`)
        }
      }
      const running = [...states.values()].filter(s => s === 'RUNNING' || s === 'COMPLETING').length
      o.onProgress?.({ done: result.alreadyComplete.length + result.complete.length, running, pending: states.size - running, failed: failedSoFar, total: n })
    }
    if (finished.size < tracked.size) await sleep(o.pollMs, o.signal)
  }
  if (result.interrupted) return result

  // Merge every shard that had cells to run, failed ones included (their finished cells are kept;
  // their failed cells are stored failed, as a local sweep stores them, and run again next time).
  // Merging is idempotent, so shards complete before this run are merged again harmlessly.
  const store = new ResultsStore(o.db)
  try {
    for (const i of [...result.alreadyComplete, ...result.complete, ...result.failed.map(f => f.shard)].sort((a, b) => a - b)) {
      if (plan.cellsPerShard[i] === 0 || !fs.existsSync(shardDb(job, i))) continue
      const m = store.mergeFrom(shardDb(job, i))
      result.merged.runs += m.runs
      result.merged.skipped += m.skipped
    }
    // Every planned variant was used by this sweep, those whose cells the store held too (no shard
    // planned them): the leaderboard's row is the variant used last (a reverted method edit).
    for (const id of new Set(plan.index?.cells.flatMap(c => (c.variantId ? [c.variantId] : [])))) store.markVariantUsed(id)
  } finally {
    store.close()
  }
  result.complete.sort((a, b) => a - b)
  return result
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise(res => {
    const t = setTimeout(done, ms)
    function done() { clearTimeout(t); signal?.removeEventListener('abort', done); res() }
    signal?.addEventListener('abort', done, { once: true })
  })
}
