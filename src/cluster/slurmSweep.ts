// `moe-harness sweep --slurm`: plan the cells, write the array script, submit the shards whose cells
// are incomplete, follow them, and merge the finished shard files into the main store. The shard
// files, the script, the job record and the logs live in one folder next to the store.
import fs from 'node:fs'
import path from 'node:path'
import type { HarnessConfig } from '../config/defineConfig.ts'
import { ResultsStore } from '../store/resultsStore.ts'
import { writeOutputFile, type FileRule, type OutputContext } from '../util/outputPaths.ts'
import { planCells, type PlannedCell } from '../sweep/plan.ts'
import { renderSbatchScript } from './sbatchScript.ts'
import { renderK8sManifest } from './k8sManifest.ts'
import { arraySpec, logDir, shardDb, slurmLog, type ClusterOptions, type ShardJob } from './jobSpec.ts'
import { finalState, queuedTasks, submitArray } from './slurm.ts'

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
}

export interface ClusterPlan { job: ShardJob; cells: PlannedCell[]; cellsPerShard: number[] }

/** Where a store's cluster files go: `<store folder>/slurm-<store name>/`. */
export function clusterStateDir(db: string): string {
  return path.join(path.dirname(path.resolve(db)), `slurm-${path.basename(db, path.extname(db))}`)
}

export async function planClusterJob(o: ClusterPlanOptions): Promise<ClusterPlan> {
  const probe = await planCells(o.config, o.baseDir, 1)
  const shards = Math.max(1, Math.min(o.shards, probe.length))
  const cells = await planCells(o.config, o.baseDir, shards)
  const cellsPerShard = Array.from({ length: shards }, (_, i) => cells.filter(c => c.shard === i).length)
  const job: ShardJob = {
    shards, workDir: o.baseDir, bin: path.resolve(import.meta.dirname, '..', '..', 'bin', 'moe-harness.mjs'),
    config: path.resolve(o.configFile), stateDir: clusterStateDir(o.db), sweepArgs: o.sweepArgs,
  }
  return { job, cells, cellsPerShard }
}

export function sbatchScriptFor(plan: ClusterPlan, o: ClusterPlanOptions): string {
  return renderSbatchScript(plan.job, o.cluster, { cells: plan.cells.length, cellsPerShard: plan.cellsPerShard, store: path.resolve(o.db) })
}

export function k8sManifestFor(plan: ClusterPlan, o: ClusterPlanOptions): string {
  return renderK8sManifest(plan.job, o.cluster)
}

/** The plan as text: one line per shard with its cells. */
export function describePlan(plan: ClusterPlan): string {
  const lines = [`${plan.cells.length} cells in ${plan.job.shards} shards:`]
  for (let i = 0; i < plan.job.shards; i++) {
    const mine = plan.cells.filter(c => c.shard === i)
    lines.push(`  shard ${i} (${mine.length} cells):`)
    for (const c of mine) lines.push(`    ${c.model} ${c.method} ${JSON.stringify(c.params)} ${c.task}`)
  }
  return lines.join('\n')
}

/**
 * A shard is complete when its file's latest sweep finished this plan's shard with every cell
 * complete and none failed (the sweep row the shard's `moe-harness sweep` writes when it ends).
 */
export function shardComplete(plan: ClusterPlan, config: HarnessConfig, index: number): boolean {
  if (plan.cellsPerShard[index] === 0) return true
  const file = shardDb(plan.job, index)
  if (!fs.existsSync(file)) return false
  let store: ResultsStore | undefined
  try {
    store = new ResultsStore(file, { readonly: true })
    const last = store.latestSweep()
    if (!last?.finishedAt || last.failed > 0 || last.completed !== last.cells || last.cells !== plan.cellsPerShard[index]) return false
    const ran = last.config as { config: HarnessConfig; shard: { index: number; count: number } | null }
    const sameConfig = JSON.stringify({ ...ran.config, pool: null }) === JSON.stringify({ ...config, pool: null })
    return sameConfig && ran.shard?.index === index && ran.shard?.count === plan.job.shards
  } catch {
    return false // unreadable or half-written: run it again (the sweep resumes what is stored)
  } finally {
    store?.close()
  }
}

export interface ShardFailure { shard: number; jobId: string; state: string; exitCode: string; log: string }

export interface SlurmSweepResult {
  stateDir: string
  script: string
  shards: number
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
  const plan = await planClusterJob(o)
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

  const result: SlurmSweepResult = { stateDir: job.stateDir, script: scriptFile, shards: n, alreadyComplete: [], submitted: [], jobId: null, followed: [], complete: [], failed: [], merged: { runs: 0, skipped: 0 }, interrupted: false }
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
    if (shardComplete(plan, o.config, i)) result.alreadyComplete.push(i)
    else todo.push(i)
  }
  if (todo.length) {
    const jobId = submitArray(scriptFile, arraySpec(todo))
    result.jobId = jobId
    result.submitted = todo
    for (const i of todo) tracked.set(i, jobId)
    o.log(`slurm: submitted shards ${arraySpec(todo)} of 0-${n - 1} as job ${jobId}` +
      (result.alreadyComplete.length ? ` (shards ${arraySpec(result.alreadyComplete)} already complete)` : '') + `; script ${scriptFile}`)
  } else if (!tracked.size) o.log(`slurm: all ${n} shards already complete; nothing to submit`)
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
        if (shardComplete(plan, o.config, shard)) result.complete.push(shard)
        else {
          const end = finalState(jobId, shard)
          const failure = { shard, jobId, state: end?.state ?? 'UNKNOWN', exitCode: end?.exitCode ?? '?', log: slurmLog(job.stateDir, jobId, shard) }
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

  // Merge every complete shard (earlier ones too: merging is idempotent) into the main store.
  const store = new ResultsStore(o.db)
  try {
    for (const i of [...result.alreadyComplete, ...result.complete].sort((a, b) => a - b)) {
      if (plan.cellsPerShard[i] === 0) continue
      const m = store.mergeFrom(shardDb(job, i))
      result.merged.runs += m.runs
      result.merged.skipped += m.skipped
    }
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
