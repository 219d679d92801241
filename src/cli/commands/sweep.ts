import fs from 'node:fs'
import path from 'node:path'
import { Option, type Command } from 'commander'
import { formerStoreWarning, loadConfig, storeFile, storeIsConfigs, type HarnessConfig } from '../../config/defineConfig.ts'
import { fail } from '../../errors.ts'
import { readSkipCells, type ClusterOptions } from '../../cluster/jobSpec.ts'
import { pathsOutsideMount } from '../../cluster/k8sManifest.ts'
import { describePlan, jobPaths, k8sManifestFor, planClusterJob, runSlurmSweep, sbatchScriptFor, type ClusterPlanOptions, type SlurmSweepResult } from '../../cluster/slurmSweep.ts'
import { parseShard } from '../../sweep/plan.ts'
import { runSweep, type SweepSummary } from '../../sweep/runSweep.ts'
import { checkStorePath } from '../../store/resultsStore.ts'
import { shellQuote } from '../../util/shellQuote.ts'
import { createProgress } from '../progress.ts'
import { k8sMemoryProblem, parseK8sMemory } from '../../util/k8sQuantity.ts'
import { checkOutputDir, writeOutputFile, type FileRule, type OutputContext } from '../../util/outputPaths.ts'
import { buildReport } from './report.ts'

export interface SweepFlags {
  config?: string
  db?: string
  shard?: string
  workers?: string
  threads?: string
  leaseSeconds?: string
  allowNonfinite?: boolean
  json?: boolean
  /** Written by `sweep --slurm` for its array tasks: cells the main store already holds. */
  skipCells?: string
}

interface ClusterFlags extends SweepFlags {
  slurm?: boolean
  dryRun?: boolean
  k8sManifest?: string
  partition?: string
  account?: string
  time?: string
  gpusPerTask?: string
  cpusPerTask?: string
  arraySize?: string
  sbatch?: string[]
  image?: string
  pvc?: string
  memory?: string
  pollSeconds?: string
}

/** Options that only a cluster sweep (--slurm, --k8s-manifest) reads. */
const CLUSTER_ONLY: readonly [keyof ClusterFlags, string][] = [
  ['arraySize', '--array-size'], ['partition', '--partition'], ['account', '--account'], ['time', '--time'], ['gpusPerTask', '--gpus-per-task'],
  ['cpusPerTask', '--cpus-per-task'], ['sbatch', '--sbatch'], ['image', '--image'], ['pvc', '--pvc'], ['pollSeconds', '--poll-seconds'],
]

/** --memory without --k8s-manifest: a local sweep sizes its pool itself, and Slurm reads its own option. */
const MEMORY_K8S_ONLY = '--memory sets the memory of the pods of a Kubernetes manifest (--k8s-manifest FILE); a local sweep fits its pool to the memory it finds, ' +
  'and a Slurm script requests what one worker needs, or the size you give with --sbatch --mem=<size> (e.g. --sbatch --mem=32G).'

export function addSweepOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'harness config (default: ./harness.config.ts)')
    .option('--db <file>', 'SQLite results store (default: the config\'s store)')
    .option('--shard <i/n>', 'run only shard i of n (0-based, e.g. $SLURM_ARRAY_TASK_ID/8); combine shards with `moe-harness merge`')
    .option('--workers <n>', "pool workers at most (overrides the config's pool.workers; default 1): fewer start when they do not fit in the memory available, and the 'pool:' line on stderr says why")
    .option('--threads <n>', "intra-op threads per worker (overrides the config's pool.threads; default: the cores shared by the workers started)")
    .option('--allow-nonfinite', 'score checkpoints whose weights hold NaN/Inf (refused by default; config: allowNonfinite)')
    .option('--lease-seconds <s>', 'how long a cell claimed by this process stays reserved without a heartbeat (default 60); several sweeps on one store split the cells', )
}

const collect = (v: string, prev: string[] = []) => [...prev, v]

export function registerSweep(program: Command): void {
  const cmd = program
    .command('sweep')
    .description('Evaluate models × methods × ratios × tasks from harness.config.ts into the SQLite store; resumable, safe to interrupt.')
    .option('--json', 'print a JSON summary as the last line')
  addSweepOptions(cmd)
  cmd
    .option('--slurm', 'run the sweep as a Slurm array job (one shard per task), follow it, merge the shards into the store and build the report')
    .option('--dry-run', 'with --slurm: print the sbatch script and the plan; submit nothing')
    .option('--k8s-manifest <file>', 'write the same shard plan as a Kubernetes Indexed Job manifest (YAML) and exit')
    .option('--array-size <n>', 'shards = array tasks (default: cluster.arraySize, 4; capped at the number of cells)')
    .option('--partition <name>', 'Slurm partition (default: cluster.partition)')
    .option('--account <name>', 'Slurm account (default: cluster.account)')
    .option('--time <limit>', 'Slurm time limit per task, e.g. 02:00:00 (default: cluster.time)')
    .option('--gpus-per-task <n>', 'GPUs per array task (default: cluster.gpusPerTask)')
    .option('--cpus-per-task <n>', 'CPUs per array task (default: cluster.cpusPerTask)')
    .option('--sbatch <option>', 'extra #SBATCH line, repeatable, e.g. --sbatch --mem=32G (default: cluster.sbatch; without a memory option the script requests what one worker needs)', collect)
    .option('--image <image>', 'Kubernetes container image (default: cluster.image)')
    .option('--pvc <claim>', 'Kubernetes PersistentVolumeClaim holding the project (default: cluster.pvc)')
    .option('--memory <size>', 'Kubernetes memory request and limit of each pod, e.g. 32Gi (default: cluster.memory, else what one worker needs); Slurm: --sbatch --mem=<size>')
    .option('--poll-seconds <s>', 'with --slurm: seconds between squeue polls (default 10)')
    .addOption(new Option('--skip-cells <file>', 'cells not to score (the array tasks of --slurm get the cells the main store holds)').hideHelp())
  cmd.addHelpText('after', `
Complete cells are skipped, so rerunning after a crash or Ctrl-C resumes where it stopped. Several
sweep processes on the same store split the cells between them (each cell is leased while scored).
Exits 1 when any cell failed (the summary lists them) or a limit of this machine stopped the sweep
(vm.max_map_count: nothing stored as failed; fix it and rerun to resume), 130 when interrupted.
Examples:
  moe-harness sweep
  moe-harness sweep --config my.config.ts --db results.sqlite --shard 0/4
  moe-harness sweep --slurm --partition cpu --cpus-per-task 8 --time 04:00:00 --array-size 8
  moe-harness sweep --slurm --partition gpu --gpus-per-task 1   (with device: 'cuda' in the config)
  moe-harness sweep --slurm --dry-run
  moe-harness sweep --k8s-manifest sweep-job.yaml --array-size 8
`)
  cmd.action(async (flags: ClusterFlags) => {
    if (flags.k8sManifest || flags.slurm || flags.dryRun) return clusterAction(flags)
    if (flags.memory !== undefined) fail('INVALID_ARGUMENT', MEMORY_K8S_ONLY)
    // A cluster option on a local sweep was ignored silently (`sweep --array-size 8` ran one local process).
    const clusterOnly = CLUSTER_ONLY.filter(([key]) => flags[key] !== undefined).map(([, flag]) => flag)
    if (clusterOnly.length) fail('INVALID_ARGUMENT', `${clusterOnly.join(', ')} ${clusterOnly.length > 1 ? 'apply' : 'applies'} to a cluster sweep only: add --slurm (or --k8s-manifest FILE), or drop ${clusterOnly.length > 1 ? 'them' : 'it'} for a local sweep (--shard i/n runs one shard here).`)
    const summary = await sweepFromFlags(flags)
    if (!summary.interrupted && !summary.stopped && !flags.skipCells) process.stderr.write(nextStep(summary, flags))
    if (flags.json) process.stdout.write(JSON.stringify(summary) + '\n')
    const code = sweepExitCode(summary)
    if (code) process.exitCode = code
  })
}


/** A path as the user would type it from here: relative inside the current folder, else absolute. */
function shellPath(file: string): string {
  const rel = path.relative(process.cwd(), file)
  return shellQuote(rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file)
}

/**
 * Where the results went and the command that publishes them: `sweep` wrote a store and said neither
 * (the config's store is relative to the config, a shard's is its --db), and `report` needs --db.
 */
export function nextStep(summary: { db: string; config: HarnessConfig; baseDir: string }, flags: Pick<SweepFlags, 'shard'>): string {
  const db = shellPath(summary.db)
  const site = `--out ${shellPath(path.resolve(summary.baseDir, summary.config.report.outDir))} --title ${shellQuote(summary.config.report.title)}`
  if (flags.shard) return `results of shard ${flags.shard} in ${db}; when every shard is done: moe-harness merge <every shard's store> --out all.sqlite, then moe-harness report --db all.sqlite ${site}\n`
  return `results in ${db}; leaderboard: moe-harness report --db ${db} ${site} (moe-harness start runs the sweep and then the report)\n`
}

function positiveInt(flag: string, v: string, min = 1): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < min) fail('INVALID_ARGUMENT', `${flag} must be ${min === 0 ? 'a non-negative' : 'a positive'} integer, got '${v}'.`)
  return n
}

/** `--memory`'s value, a Kubernetes memory quantity. Errors: INVALID_ARGUMENT naming what to write. */
function k8sMemoryFlag(v: string): string {
  if (parseK8sMemory(v) === undefined) fail('INVALID_ARGUMENT', `--memory ${k8sMemoryProblem(v)}.`)
  return v.trim()
}

function positiveNumber(flag: string, v: string): number {
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) fail('INVALID_ARGUMENT', `${flag} must be a positive number of seconds, got '${v}'.`)
  return n
}

/** The failed cells, one per line, for the end-of-sweep summary. */
export function describeFailures(summary: Pick<SweepSummary, 'failures' | 'failed'>): string {
  if (!summary.failed) return ''
  return `${summary.failed} cell(s) failed:\n${summary.failures.map(f => `  ${f.cell}: ${f.error}`).join('\n')}\n` +
    'Fix the cause and rerun the same command: complete cells are kept, failed ones are scored again.\n'
}

/**
 * What a sweep stopped by a limit of this machine prints (runSweep's summary.stopped): the cell that
 * met it, the error and its fix, and that a rerun resumes; '' when no such limit stopped it.
 */
export function describeStop(summary: Pick<SweepSummary, 'stopped' | 'cells' | 'completed' | 'skipped' | 'failed'>): string {
  const s = summary.stopped
  if (!s) return ''
  const left = summary.cells - summary.completed - summary.skipped - summary.failed
  return `sweep stopped: ${s.cell}: ${s.error}\n` +
    `That is a limit of this machine, not a failure of the variant: nothing was stored as failed, and ${left} of ${summary.cells} cell${summary.cells === 1 ? '' : 's'} ${left === 1 ? 'is' : 'are'} not scored. ` +
    'Fix it as the message says, then rerun the same command: it resumes (finished cells are kept and not scored again).\n'
}

/** A local sweep's exit status: 130 interrupted, 1 when a limit of this machine stopped it or a cell failed, else 0. */
export function sweepExitCode(summary: Pick<SweepSummary, 'interrupted' | 'stopped' | 'failed'>): number {
  return summary.interrupted ? 130 : summary.stopped || summary.failed > 0 ? 1 : 0
}

export async function sweepFromFlags(flags: SweepFlags): Promise<SweepSummary & { db: string; config: HarnessConfig; baseDir: string }> {
  const loaded = await loadConfig(flags.config)
  const config = structuredClone(loaded.config)
  if (flags.workers) config.pool.workers = positiveInt('--workers', flags.workers)
  if (flags.threads) config.pool.threads = positiveInt('--threads', flags.threads)
  if (flags.allowNonfinite) config.allowNonfinite = true
  const leaseSeconds = flags.leaseSeconds ? positiveNumber('--lease-seconds', flags.leaseSeconds) : undefined
  const db = storeFile(loaded, flags.db)
  const former = formerStoreWarning(loaded, flags.db)
  if (former) process.stderr.write(`warning: ${former}\n`)
  const controller = new AbortController()
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130)
    // In-flight cells and a variant being prepared run to their end (a method can take minutes at real size).
    process.stderr.write('\ninterrupted: no new cells start; the cells being scored and any variant being prepared finish first. Rerun to resume (Ctrl-C again quits at once; finished cells are kept)\n')
    controller.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  let bar: ReturnType<typeof createProgress> | undefined
  try {
    const summary = await runSweep({
      config, baseDir: loaded.baseDir, db, dbFromConfig: storeIsConfigs(loaded, flags.db), shard: parseShard(flags.shard), signal: controller.signal, leaseSeconds,
      skipCells: flags.skipCells ? readSkipCells(flags.skipCells) : undefined,
      log: line => process.stderr.write(`${line}\n`),
      onProgress: p => { (bar ??= createProgress('sweep', p.total, { unit: 'cells' })).update(p.done, p.label) },
    })
    bar?.stop()
    const t = summary.timings
    const workers = summary.pool.workers // fewer than config.pool.workers when they did not fit in memory
    // The share is the workers' scoring time over the wall time. The parts outside scoring are listed but
    // not summed into a share: workers build sessions while the main thread prepares the next variant,
    // so their sum passed 100% of the sweep (114.5% with two workers and weight-editing methods).
    const scoringShare = (100 * t.scoring) / workers / Math.max(t.total, 1e-9)
    process.stderr.write(`sweep: ${summary.completed} cell${summary.completed === 1 ? '' : 's'} scored, ${summary.skipped} already complete${summary.sameAsScoredHere ? ` (${summary.sameAsScoredHere === summary.skipped ? 'all' : summary.sameAsScoredHere} the same variant as a cell scored in this sweep, e.g. each method at ratio 0)` : ''}, ${summary.failed} failed, in ${t.total.toFixed(1)} s; ` +
      `onnxruntime scoring ${(t.scoring / workers).toFixed(1)} s per worker = ${scoringShare.toFixed(1)}% of the sweep; outside scoring (overlapping): calibration ${t.calibration.toFixed(1)} s, ` +
      `transforms ${t.transform.toFixed(1)} s, session builds ${(t.sessionBuild / workers).toFixed(1)} s per worker, database ${t.database.toFixed(1)} s\n`)
    process.stderr.write(describeFailures(summary))
    process.stderr.write(describeStop(summary))
    const left = summary.cells - summary.completed - summary.skipped - summary.failed
    if (summary.interrupted && !summary.stopped && left > 0) process.stderr.write(`interrupted: ${left} of ${summary.cells} cell${summary.cells === 1 ? '' : 's'} not scored; rerun the same command to score ${left === 1 ? 'it' : 'them'} (finished cells are kept and not scored again).\n`)
    return { ...summary, db, config, baseDir: loaded.baseDir }
  } finally {
    bar?.stop()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

async function clusterAction(flags: ClusterFlags): Promise<void> {
  if (flags.shard) fail('INVALID_ARGUMENT', '--shard cannot be combined with --slurm or --k8s-manifest: the cluster job assigns the shards (use --array-size to choose how many).')
  if (flags.dryRun && !flags.slurm) fail('INVALID_ARGUMENT', '--dry-run applies to --slurm: use `moe-harness sweep --slurm --dry-run`.')
  // Before the size is read: '--slurm --memory 32GB' was told to write 32Gi, then that --memory is Kubernetes-only.
  if (flags.memory !== undefined && !flags.k8sManifest) fail('INVALID_ARGUMENT', MEMORY_K8S_ONLY)
  const loaded = await loadConfig(flags.config)
  const config = structuredClone(loaded.config)
  const c = config.cluster
  const cluster: ClusterOptions = {
    partition: flags.partition ?? c.partition, account: flags.account ?? c.account, time: flags.time ?? c.time,
    gpusPerTask: flags.gpusPerTask !== undefined ? positiveInt('--gpus-per-task', flags.gpusPerTask, 0) : c.gpusPerTask,
    cpusPerTask: flags.cpusPerTask !== undefined ? positiveInt('--cpus-per-task', flags.cpusPerTask) : c.cpusPerTask,
    sbatch: flags.sbatch ?? c.sbatch, image: flags.image ?? c.image, pvc: flags.pvc ?? c.pvc,
    memory: flags.memory !== undefined ? { value: k8sMemoryFlag(flags.memory), from: '--memory' } : c.memory !== undefined ? { value: c.memory, from: 'cluster.memory' } : undefined,
  }
  if (cluster.memory && flags.slurm) {
    // Not an error: a config shared by both paths keeps its Kubernetes size; Slurm reads only its own options.
    process.stderr.write(`warning: ${cluster.memory.from} ${cluster.memory.value} applies to the Kubernetes manifest only; the Slurm script requests what one worker needs, or the size given with --sbatch --mem=<size> (or cluster.sbatch: ['--mem=<size>']).\n`)
  }
  if (cluster.gpusPerTask && config.device === 'cpu') {
    // Not an error: the job still runs correctly, it only holds GPUs it never uses.
    process.stderr.write(`warning: ${flags.gpusPerTask !== undefined ? '--gpus-per-task' : 'cluster.gpusPerTask'} ${cluster.gpusPerTask} reserves GPUs for every shard, but device is 'cpu' in ${loaded.file ?? 'the config'}${loaded.config.device === 'cpu' ? ' (the default)' : ''}, so the shards score on CPUs and the GPUs sit idle: set device: 'cuda' in the config to use them, or drop the GPU request.\n`)
  }
  const sweepArgs: string[] = []
  if (flags.workers) { config.pool.workers = positiveInt('--workers', flags.workers); sweepArgs.push('--workers', flags.workers) }
  if (flags.threads) { config.pool.threads = positiveInt('--threads', flags.threads); sweepArgs.push('--threads', flags.threads) }
  if (flags.allowNonfinite) { config.allowNonfinite = true; sweepArgs.push('--allow-nonfinite') }
  const db = storeFile(loaded, flags.db) // as in sweepFromFlags and start
  const former = formerStoreWarning(loaded, flags.db)
  if (former) process.stderr.write(`warning: ${former}\n`)
  const options: ClusterPlanOptions = {
    config, baseDir: loaded.baseDir, configFile: loaded.file!, db, cluster, sweepArgs,
    shards: flags.arraySize !== undefined ? positiveInt('--array-size', flags.arraySize) : c.arraySize,
  }

  if (flags.k8sManifest) {
    const plan = await planClusterJob(options, false) // every cell: the manifest is merged by hand
    const file = path.resolve(flags.k8sManifest)
    const rule: FileRule = {
      what: 'Kubernetes manifest', example: 'sweep-job.yaml',
      isOurs: f => fs.readFileSync(f, 'utf8').startsWith('# moe-harness sweep as a Kubernetes Indexed Job'),
    }
    const ctx: OutputContext = { source: '--k8s-manifest', databases: [db], models: Object.values(config.models).map(m => path.resolve(loaded.baseDir, m)) }
    writeOutputFile(file, ctx, rule, tmp => fs.writeFileSync(tmp, k8sManifestFor(plan, options)))
    process.stderr.write(`wrote ${file}: Indexed Job with ${plan.job.shards} completions over ${plan.cells.length} cells; apply with kubectl apply -f ${flags.k8sManifest}\n`)
    const outside = pathsOutsideMount(plan.job, jobPaths(options))
    if (outside.length) {
      process.stderr.write(`WARNING: the pods mount the claim '${cluster.pvc}' at ${plan.job.workDir} (the config's folder), so they cannot see:\n` +
        outside.map(p => `  ${p.what}: ${p.path}\n`).join('') +
        `Move these inside ${plan.job.workDir} (or put the config in a folder that holds the project, the models and the store), ` +
        `or edit ${flags.k8sManifest} to mount them; as written, those shards fail or write their results to the pod's ephemeral disk.\n`)
    }
    if (!flags.slurm) return
  }

  if (flags.dryRun) {
    const plan = await planClusterJob(options)
    process.stdout.write(`${sbatchScriptFor(plan, options)}\n# ---- plan (not submitted; the script would be written to ${path.join(plan.job.stateDir, 'sweep.sbatch')})\n${describePlan(plan, db).replace(/^/gm, '# ')}\n`)
    return
  }

  // The store's folder before anything is written: the shards' folder is made beside it, so a mistyped
  // --db in a missing folder became a new folder, an array run and a new, empty store merged into there.
  checkStorePath(db, '--db', storeIsConfigs(loaded, flags.db))
  // The site folder is checked before submitting: a bad report.outDir fails now, not after the array.
  const out = path.resolve(loaded.baseDir, config.report.outDir)
  const output: OutputContext = { source: `report.outDir in ${loaded.file}`, databases: [db], models: Object.values(config.models).map(m => path.resolve(loaded.baseDir, m)) }
  checkOutputDir(out, 'report', output)
  const controller = new AbortController()
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130)
    controller.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  let bar: ReturnType<typeof createProgress> | undefined
  let result: SlurmSweepResult
  const t0 = performance.now()
  try {
    result = await runSlurmSweep({
      ...options, signal: controller.signal,
      pollMs: 1000 * (flags.pollSeconds ? positiveNumber('--poll-seconds', flags.pollSeconds) : 10),
      log: line => process.stderr.write(`${line}\n`),
      onProgress: p => { (bar ??= createProgress('slurm', p.total, { unit: 'shards' })).update(p.done, `${p.running} running, ${p.pending} pending, ${p.failed} failed`) },
    })
  } finally {
    bar?.stop()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  const seconds = (performance.now() - t0) / 1000
  if (result.interrupted) {
    process.stderr.write(`\ninterrupted: the array job keeps running on the cluster; rerun the same command to follow it and merge (scancel ${result.jobId ?? '<job id>'} to stop it)\n`)
    if (flags.json) process.stdout.write(JSON.stringify(result) + '\n')
    process.exitCode = 130
    return
  }
  process.stderr.write(`slurm: ${result.complete.length + result.alreadyComplete.length}/${result.shards} shards complete, ${result.failed.length} failed, in ${seconds.toFixed(1)} s; ` +
    `${result.cells.held} of ${result.cells.total} cells were already in the store; merged ${result.merged.runs} runs into ${db}\n`)
  if (result.failed.length) {
    const failedCells = result.failed.reduce((n, f) => n + f.failedCells.length, 0)
    process.stderr.write(`${result.failed.length} shard(s) failed` + (failedCells ? `, ${failedCells} cell(s) failed` : '') + ` (their finished cells are merged):\n` +
      result.failed.map(f => [
        `  shard ${f.shard} (job ${f.jobId}_${f.shard}): ${f.state}, exit ${f.exitCode}; log: ${f.log}`,
        ...f.failedCells.map(c => `    ${c.cell}: ${c.error}`),
        ...(f.notRun ? [`    ${f.notRun} cell(s) not run (the task ended before reaching them)`] : []),
      ].join('\n')).join('\n') + '\n' +
      'Read the logs, fix the cause and rerun the same command: complete cells are kept, only the missing and failed ones are submitted again.\n')
  }
  if (result.cells.held + result.merged.runs + result.merged.skipped > 0) {
    const pages = await buildReport(db, out, config.report.title, output)
    process.stderr.write(`leaderboard: ${pages.length} pages; open ${path.join(out, 'index.html')}\n`)
  }
  if (flags.json) process.stdout.write(JSON.stringify(result) + '\n')
  if (result.failed.length) process.exitCode = 1
}
