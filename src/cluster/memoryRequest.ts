// The memory each array task of `sweep --slurm` asks Slurm for. A task without a request gets the
// partition's default (often DefMemPerCPU, a few GB) and is killed for memory only after it queued and
// started calibrating; so the script requests what the pool inside the task needs for one worker,
// unless the user asked for memory: that request is kept, and checked against the need at submit.
import { rowsPerBatch, WHOLE_PASS_OUTPUT_LIMIT } from '../calibration/collect.ts'
import type { StatNeed } from '../calibration/stats.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { spillBudgetBytes } from '../edits/overrideSpill.ts'
import { estimateWorkerBytes, float32WeightBytes, MAIN_SESSIONS, MEMORY_SAFETY, modelWeightBytes, poolBytes, poolFootprint, sessionBytes, SESSIONS_PER_WORKER } from '../pool/memoryFit.ts'
import type { SweepInputs } from '../sweep/inputs.ts'
import { tasksRequestBounds } from '../tasks/requestBound.ts'
import { formatBytes } from '../util/bytes.ts'
import type { ClusterOptions } from './jobSpec.ts'

/**
 * What an array task's process holds before its pool starts, which the pool's check finds already used
 * under the task's limit: Node, the CLI's modules compiled by tsx, the config, the tasks' documents, the
 * opened checkpoints' headers and tokenizers, the store. Measured: `sweep --slurm --dry-run` on
 * models/tiny-moe (which loads exactly these) peaks at 207 MB RSS; 512 MiB leaves room for large
 * tokenizers and task files.
 */
export const MAIN_PROCESS_BYTES = 512 * 2 ** 20

const MIB = 2 ** 20
const GIB = 2 ** 30

/** The memory one array task needs with one worker, by part (bytes). */
export interface MemoryNeed {
  /** mainBytes + max(modelBytes + sessions + perWorkerBytes + preparationBytes, calibration.bytes) / MEMORY_SAFETY, sessions = (MAIN_SESSIONS + SESSIONS_PER_WORKER) × sessionBytes. */
  bytes: number
  /** MAIN_PROCESS_BYTES. */
  mainBytes: number
  /** The largest model's weights (memoryFit.ts modelWeightBytes), held once per process. */
  modelBytes: number
  /** The config's name of that model. */
  model: string
  /** The largest one-worker estimate over the models at the sweep's worst batch, beside its sessions (memoryFit.ts poolFootprint), float32 weights included with MOE_HARNESS_WEIGHTS=memory. */
  perWorkerBytes: number
  /**
   * One scoring session of the model with the most weight tensors (memoryFit.ts sessionBytes:
   * onnxruntime's state per tensor); the pool with one worker counts MAIN_SESSIONS + SESSIONS_PER_WORKER
   * of them. Absent: 0.
   */
  sessionBytes?: number
  batch?: { rows: number; rowTokens: number }
  weightsInMemory: boolean
  /** The costliest one-pass calibration of the sweep, weights included (absent when no variant calibrates): see calibrationBytes. */
  calibration?: { bytes: number; model: string; sequences: number; length: number }
  /** What preparing a variant adds while the workers score: edited tensors (spill budget, at most the float32 weights) and a sequential calibration session; 0 when every variant is the unpruned model. */
  preparationBytes: number
}

/**
 * Bytes of calibrating `ckpt` on windows of `length` tokens beyond its weights (src/calibration/collect.ts
 * and sequential.ts): a float32 session at collect.ts's batch (its state, memoryFit.ts sessionBytes; its
 * activations at rowsPerBatch(length) windows, estimateWorkerBytes; + 2 × the float32 weights when
 * `weightsInMemory`), the outputs of one batch (a
 * whole pass's are at most WHOLE_PASS_OUTPUT_LIMIT, more goes layer by layer) and, for the
 * layer-by-layer and sequential procedures, the residual stream of every window kept between layers,
 * twice (a layer's input and output). A sweep of a calibrating method measured 1.43 GB peak where one
 * scoring worker needed 0.5 GB (a hidden-512 Mixtral shape, 4 x 2048 tokens), which the first version
 * of this request left out.
 */
export function calibrationBytes(ckpt: Pick<Checkpoint, 'spec' | 'tensors'>, sequences: number, length: number, weightsInMemory: boolean): number {
  return sessionBytes(ckpt) + estimateWorkerBytes(ckpt.spec, rowsPerBatch(length), length) + (weightsInMemory ? 2 * float32WeightBytes(ckpt) : 0) +
    WHOLE_PASS_OUTPUT_LIMIT + 2 * sequences * length * ckpt.spec.hiddenSize * 4
}

/** Statistics collected on the first windows only (collect.ts windowsNeeded: NAEE's layer samples), not on every window. */
const SAMPLE_NEEDS: readonly StatNeed[] = ['layerSamples', 'layerTargets']
/** collect.ts's default sample: the first 2048 tokens (CollectOptions.sampleTokens). */
const SAMPLE_TOKENS = 2048

/**
 * The memory one array task needs (bytes): the figure for which the pool inside the task, which reads
 * the task's cgroup limit (memoryFit.ts availableMemoryBytes: the limit less what the process already
 * uses) and starts w workers only when poolBytes(w) (the model, w workers' batches and the sessions) <= MEMORY_SAFETY × available,
 * finds that one worker fits, and for which the calibration and the preparation of variants fit too:
 *
 *   need = MAIN_PROCESS_BYTES + max(one-pass calibration, scoring + preparation) / MEMORY_SAFETY
 *   one-pass calibration = model + calibrationBytes             (main process, before any cell is scored)
 *   scoring = modelBytes + (MAIN_SESSIONS + SESSIONS_PER_WORKER) × sessionBytes + perWorkerBytes
 *             (the pool's rule for one worker, memoryFit.ts poolBytes)
 *   preparation = min(spill budget, float32 weights) + calibrationBytes less its session's state (the
 *                 main process's session scoring counts) if a variant calibrates sequentially (a method
 *                 runs in the main process while the workers score other cells)
 *
 * modelBytes: the largest model's weights (modelWeightBytes; mapped once per process); sessionBytes:
 * onnxruntime's state of one session per weight tensor of the model with the most (sessionBytes); perWorkerBytes:
 * the largest one-worker estimate over the models (estimateWorkerBytes at worstBatch of batchTokens,
 * with rows as long and as many as the sweep's tasks build at each model's context, exactly as
 * runSweep sizes its pool; + 2 × the float32 weights when `weightsInMemory`); calibrationBytes at the
 * calibration each calibrating model uses (SweepInputs.calibration; a variant calibrates when its
 * method needs statistics at its ratio); the spill budget (MOE_HARNESS_SPILL_MB) bounds the float32
 * edited tensors a method holds; MEMORY_SAFETY (0.85) is the pool's own margin for what the estimate
 * leaves out; MAIN_PROCESS_BYTES what the process holds before the pool starts. Every model of the
 * config counts, not only those of cells left to run: each task opens all of them and sizes its pool
 * over all of them. Each further worker adds (perWorkerBytes + SESSIONS_PER_WORKER × sessionBytes) /
 * MEMORY_SAFETY. On a GPU the activations
 * live in the device's memory, so the figure is generous there.
 */
export function taskMemoryNeed(inputs: Pick<SweepInputs, 'config' | 'models' | 'tasks' | 'taskData' | 'slots' | 'calibration'>, weightsInMemory: boolean): MemoryNeed {
  const footprint = poolFootprint({
    models: [...inputs.models.values()],
    batchTokens: inputs.config.batchTokens,
    ...tasksRequestBounds(inputs.tasks, name => inputs.taskData.get(name)!.docs),
    weightsInMemory,
  })
  const model = [...inputs.models].find(([, ckpt]) => modelWeightBytes(ckpt) === footprint.modelBytes)?.[0] ?? '?'
  let calibration: MemoryNeed['calibration']
  let preparation = 0
  for (const [name, ckpt] of inputs.models) {
    const planned = inputs.slots.filter(s => s.spec.model === name).flatMap(s => (s.planned.status === 'planned' ? [{ plan: s.planned.plan, ratio: Number(s.spec.params.ratio ?? 0) }] : []))
    // A method's edited tensors: at most the spill budget in float32, and never more than every weight
    // in float32 (MOE_HARNESS_SPILL_MB=Infinity keeps them all in memory: a finite figure still).
    const edits = planned.some(p => p.ratio > 0 || p.plan.needs.length > 0) ? Math.min(spillBudgetBytes(), float32WeightBytes(ckpt)) : 0
    const plans = planned.map(p => p.plan).filter(p => p.needs.length > 0)
    if (plans.length === 0) {
      preparation = Math.max(preparation, edits)
      continue
    }
    const spec = inputs.calibration(ckpt)
    const length = spec.length
    // NAEE's layer samples alone read only the first windows.
    const sequences = plans.every(p => p.needs.every(n => SAMPLE_NEEDS.includes(n))) ? Math.min(spec.sequences, Math.ceil(SAMPLE_TOKENS / length)) : spec.sequences
    const beyondWeights = calibrationBytes(ckpt, sequences, length, weightsInMemory)
    const bytes = modelWeightBytes(ckpt) + beyondWeights
    if (!calibration || bytes > calibration.bytes) calibration = { bytes, model: name, sequences, length }
    // A sequential calibration's session is the main process's one, which scoring counts already.
    preparation = Math.max(preparation, edits + (plans.some(p => p.procedure === 'sequential') ? beyondWeights - sessionBytes(ckpt) : 0))
  }
  const scoring = poolBytes(footprint, 1) + preparation
  return {
    bytes: MAIN_PROCESS_BYTES + Math.max(scoring, calibration?.bytes ?? 0) / MEMORY_SAFETY,
    mainBytes: MAIN_PROCESS_BYTES, model, ...footprint, weightsInMemory, calibration, preparationBytes: preparation,
  }
}

/**
 * How `need` is made up, in words, for the script's and the manifest's notes and the warnings:
 * 'main process 537 MB + (model 'x' 13.8 GB + 1 worker 2.0 GB at batches of 4 x 512 tokens + 3 sessions
 * x 41.3 MB (onnxruntime's state per weight tensor)) / 85%', with the preparation and calibration terms
 * when a variant calibrates.
 */
export function describeNeed(need: MemoryNeed): string {
  const batch = need.batch ? ` at batches of ${need.batch.rows} x ${need.batch.rowTokens} tokens` : ''
  const own = need.weightsInMemory ? ' (its own float32 weights, MOE_HARNESS_WEIGHTS=memory, and activations)' : ''
  const s = need.sessionBytes ?? 0
  const sessions = s > 0 ? ` + ${MAIN_SESSIONS + SESSIONS_PER_WORKER} sessions x ${formatBytes(s)} (onnxruntime's state per weight tensor)` : ''
  const scoring = `model '${need.model}' ${formatBytes(need.modelBytes)} + 1 worker ${formatBytes(need.perWorkerBytes)}${own}${batch}${sessions}`
  const c = need.calibration
  const safety = `${Math.round(MEMORY_SAFETY * 100)}%`
  const preparing = need.preparationBytes > 0 ? ` + preparing a variant ${formatBytes(need.preparationBytes)}` : ''
  if (!c) return `main process ${formatBytes(need.mainBytes)} + (${scoring}${preparing}) / ${safety}`
  return `main process ${formatBytes(need.mainBytes)} + max(scoring: ${scoring}${preparing}; ` +
    `calibrating '${c.model}' on ${c.sequences} x ${c.length} tokens: ${formatBytes(c.bytes)}) / ${safety}`
}

/**
 * The note for a config asking `workers` > 1 workers (Slurm's script, Kubernetes' manifest): the pool
 * in each task or pod sizes its workers to scoring alone (memoryFit.ts; not to a variant being prepared
 * beside them), so the note gives what all of them need, written by `size` in the cluster's unit.
 */
export function workersNote(need: MemoryNeed, workers: number, where: 'task' | 'pod', size: (bytes: number) => string): string {
  const each = (need.perWorkerBytes + SESSIONS_PER_WORKER * (need.sessionBytes ?? 0)) / MEMORY_SAFETY
  return `pool.workers ${workers}: the pool in each ${where} starts the workers its memory fits for scoring (its 'pool:' line in the log says how many); ` +
    `each further worker adds ${formatBytes(each)}, so all ${workers} need ${size(need.bytes + (workers - 1) * each)}.`
}

/** `bytes` rounded up to whole GiB, as sbatch writes a size ('18G'; Slurm's G is 1024 MiB). At least 1G. */
export function slurmSize(bytes: number): string {
  return `${Math.max(1, Math.ceil(bytes / GIB))}G`
}

/**
 * Bytes of a Slurm memory size: a whole number with an optional unit K, M, G or T (binary, either case,
 * a trailing B allowed: sbatch reads 64GB as 64G), megabytes without one, as sbatch reads --mem.
 * Undefined for anything else.
 */
export function parseSlurmSize(text: string): number | undefined {
  const m = /^(\d+)\s*(?:([kmgt])b?)?$/i.exec(text.trim())
  if (!m) return undefined
  const unit = { K: 2 ** 10, M: MIB, G: GIB, T: 2 ** 40 }[(m[2] ?? 'M').toUpperCase() as 'K' | 'M' | 'G' | 'T']
  return Number(m[1]) * unit
}

export type MemoryOption = 'mem' | 'mem-per-cpu' | 'mem-per-gpu'

/**
 * The memory option sbatch's long option `name` is, if any: sbatch (getopt_long) takes an exact name or
 * a prefix unique among its options, so `--mem-per-c=4G` is --mem-per-cpu (`--mem-per` is ambiguous,
 * and `--mem-bind` no memory request).
 */
function memoryOption(name: string): MemoryOption | undefined {
  if (name === 'mem') return 'mem'
  for (const o of ['mem-per-cpu', 'mem-per-gpu'] as const) if (name.length > 'mem-per-'.length && o.startsWith(name)) return o
  return undefined
}

/** Slurm's input environment variables for the memory options: they override a script's #SBATCH lines. */
const MEMORY_ENV: Record<string, MemoryOption> = { SBATCH_MEM_PER_NODE: 'mem', SBATCH_MEM_PER_CPU: 'mem-per-cpu', SBATCH_MEM_PER_GPU: 'mem-per-gpu' }

/** A memory request the user made. */
export interface UserMemory {
  option: MemoryOption
  /** As the user wrote it, for messages: '--mem=64G', or 'SBATCH_MEM_PER_NODE=64G'. */
  given: string
  value: string
  /** The size per unit (node, CPU or GPU), undefined when it is not one sbatch reads as a size. */
  bytes?: number
}

/**
 * The memory request among `sbatch` entries (ClusterOptions.sbatch, as --sbatch or the config's
 * cluster.sbatch write them: '--mem=64G', '--mem 64G', 'mem=64G', '--mem-per-cpu=4G', or any prefix
 * sbatch accepts) and Slurm's input environment variables (SBATCH_MEM_PER_NODE, _PER_CPU, _PER_GPU),
 * which override the script's lines. The last one wins, as in sbatch.
 */
export function userMemoryRequest(sbatch: readonly string[], env: Record<string, string | undefined> = {}): UserMemory | undefined {
  let found: UserMemory | undefined
  for (const entry of sbatch) {
    const dashed = entry.trim().startsWith('-') ? entry.trim() : `--${entry.trim()}`
    const m = /^--([A-Za-z][A-Za-z0-9-]*)(?:\s*=\s*|\s+|$)(.*)$/s.exec(dashed)
    const option = m && memoryOption(m[1]!)
    if (option) found = { option, given: dashed, value: m[2]!.trim(), bytes: parseSlurmSize(m[2]!) }
  }
  for (const [name, option] of Object.entries(MEMORY_ENV)) {
    const value = env[name]
    if (value !== undefined && value !== '') found = { option, given: `${name}=${value}`, value, bytes: parseSlurmSize(value) }
  }
  return found
}

/** What the script asks for, and what to tell the user. */
export interface MemoryRequest {
  need: MemoryNeed
  /** The `--mem=…` option the script adds when the user gave no memory option. */
  option?: string
  user?: UserMemory
  /** Bytes per task of the user's request (per CPU or GPU × those of the task); 0 for all of a node's memory; undefined when unreadable. */
  userBytes?: number
  /** Lines for the script's header (without the leading '# '): the figure, where it comes from, how to override, the threads. */
  notes: string[]
  /** The user's request is below the need: one line for stderr (without 'warning: '). */
  warning?: string
}

/**
 * The memory request of the array script for a sweep needing `need`: `--mem=<need, rounded up>` when
 * `cluster.sbatch` and `env` hold no memory option; else the user's option, kept, with a warning when
 * it asks less than the need per task (--mem-per-cpu × the task's CPUs, --cpus-per-task or Slurm's
 * default 1; --mem-per-gpu × --gpus-per-task), not an error: the user may know their cluster better.
 * `pool` is the config's pool (after --workers / --threads), for the notes. Pure.
 */
export function memoryRequest(need: MemoryNeed, cluster: Pick<ClusterOptions, 'sbatch' | 'cpusPerTask' | 'gpusPerTask'>, pool: { workers: number; threads?: number }, env: Record<string, string | undefined> = {}): MemoryRequest {
  const size = slurmSize(need.bytes)
  const parts = describeNeed(need)
  const notes: string[] = []
  const user = userMemoryRequest(cluster.sbatch, env)
  const override = 'override with --sbatch --mem=<size> (or cluster.sbatch: [\'--mem=<size>\'] in the config; --mem-per-cpu and --mem-per-gpu are kept too)'
  if (!user) {
    notes.push(`Memory: --mem=${size} is what one worker of the pool in each task needs: ${parts} = ${formatBytes(need.bytes)}, ` +
      `rounded up to whole GiB (the pool's own estimate, src/pool/memoryFit.ts). Without a request the partition's default applies, ` +
      `often too little for a model; ${override}.`)
  } else {
    notes.push(`Memory: ${user.given} as given; one worker of the pool in each task needs ${formatBytes(need.bytes)} (--mem=${size}): ${parts}.`)
  }
  if (pool.workers > 1) notes.push(workersNote(need, pool.workers, 'task', bytes => `--mem=${slurmSize(bytes)}`))
  if (cluster.cpusPerTask) {
    const threads = pool.threads !== undefined
      ? `${pool.threads} intra-op thread${pool.threads === 1 ? '' : 's'} (pool.threads / --threads)`
      : `the task's ${cluster.cpusPerTask} CPU${cluster.cpusPerTask === 1 ? '' : 's'} shared by the workers that fit as intra-op threads (where Slurm binds the task to its CPUs; else the node's cores)`
    notes.push(`Threads: --cpus-per-task=${cluster.cpusPerTask}: each worker runs ${threads}; the memory needed does not grow with the threads.`)
  }
  if (!user) return { need, option: `--mem=${size}`, notes }

  let userBytes: number | undefined
  let per = ''
  if (user.bytes !== undefined) {
    if (user.bytes === 0) userBytes = 0 // --mem=0: all of a node's memory
    else if (user.option === 'mem') userBytes = user.bytes
    else {
      const cpu = user.option === 'mem-per-cpu'
      const units = (cpu ? cluster.cpusPerTask : cluster.gpusPerTask) || 1
      const how = cpu ? (cluster.cpusPerTask ? '--cpus-per-task' : 'no --cpus-per-task: Slurm\'s default') : (cluster.gpusPerTask ? '--gpus-per-task' : 'no --gpus-per-task')
      userBytes = user.bytes * units
      per = ` x ${units} ${cpu ? 'CPU' : 'GPU'}${units === 1 ? '' : 's'} (${how})`
    }
  }
  if (userBytes === undefined) {
    notes.push(`(${user.given}: '${user.value}' is not a size sbatch reads, such as 64G; not compared with the need.)`)
    return { need, user, notes }
  }
  if (userBytes === 0 || userBytes >= need.bytes) return { need, user, userBytes, notes }
  const cpus = cluster.cpusPerTask ?? 1
  const alt = user.option === 'mem-per-cpu' ? ` (or --mem-per-cpu=${slurmSize(need.bytes / cpus)} with ${cpus} CPU${cpus === 1 ? '' : 's'})`
    : user.option === 'mem-per-gpu' && cluster.gpusPerTask ? ` (or --mem-per-gpu=${slurmSize(need.bytes / cluster.gpusPerTask)})` : ''
  const where = user.given.startsWith('SBATCH_')
    ? `unset ${user.given.split('=')[0]} and request --mem=${size}${alt} with --sbatch`
    : `request --mem=${size}${alt} with --sbatch or in cluster.sbatch of the config`
  const warning = `${user.given}${per} asks ${formatBytes(userBytes)} per array task, below the ${formatBytes(need.bytes)} (--mem=${size}) one worker of the pool needs (${parts}): ` +
    `the task will likely be killed for memory, or its pool find that even one worker does not fit. ` +
    `If the cluster needs less than this estimate, keep it; else ${where}, or drop the memory option and moe-harness requests --mem=${size}.`
  notes.push(`WARNING: ${user.given}${per} = ${formatBytes(userBytes)} per task is below that need; ${where}.`)
  return { need, user, userBytes, notes, warning }
}
