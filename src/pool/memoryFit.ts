// How many scoring workers fit in memory. A sweep's pool holds the checkpoint's weights once per
// process (the engine memory-maps half-precision weights from the safetensors files; piscina workers
// are threads of that one process, so they share the mapped pages), onnxruntime's state of each
// session (per weight tensor: sessionBytes; every worker keeps up to two, the main process one), and,
// per worker, the float32 activations of the largest batch it can be sent. fitPool chooses the most
// workers up to the requested count whose total stays within a safety fraction of the memory
// available, and says so.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { defaultThreads } from '../defaults.ts'
import { fail } from '../errors.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { ModelSpec } from '../model/modelSpec.ts'
import { attentionScores, headBlock } from '../onnx/sequenceChunks.ts'
import { formatBytes } from '../util/bytes.ts'
import { MAP_COUNT_FIX, mapCount, mapCountLimit } from '../util/memoryMaps.ts'

/**
 * Fraction of the available memory a pool plans to use. The rest covers what the estimate leaves
 * out: the main thread's own work (request building, result writes, calibration statistics, variant
 * tensors a method edits), allocator fragmentation, and other processes starting meanwhile.
 */
export const MEMORY_SAFETY = 0.85

/**
 * Fixed cost of one worker beside its batch: a Node worker thread (its own V8 heap and module graph),
 * onnxruntime's thread pool and the fixed part of its sessions (~19 MB each: see
 * SESSION_BYTES_PER_TENSOR), the tokenizer. Measured (process RSS, 2 cores): an idle worker adds
 * 55-60 MB; with models/tiny-moe's session built and a 2-token batch scored, 160 MB (measured while
 * workers still copied the weights; they are mapped now). What grows with the graph (layers ×
 * experts) is counted apart, per session (sessionBytes).
 */
export const WORKER_OVERHEAD_BYTES = 256 * 2 ** 20

/**
 * How much memory onnxruntime's CPU allocator holds per byte of a run's live tensors. Measured on
 * this engine (onnxruntime-node 1.30, enableCpuMemArena, default memory pattern): the first run grows
 * the arena to the peak of live tensors, and the second run of the same shape adds a block of about
 * the same size for the planned memory pattern; RSS is then steady. Attention-bound batch (OLMoE
 * shape, H 16, 1 x 2047 tokens): 1.55 GB held for a 0.27 GB score tensor (5.6x, where 3 live copies
 * are counted below); logits-bound (V 32000, 4 x 511): 0.69 GB for a 0.26 GB logits tensor (2.6x,
 * where 2 are counted). Lower it if sessions are created without the arena or the memory pattern.
 */
export const ORT_ALLOCATION_FACTOR = 2

const F32 = 4

export interface PoolFitRequest {
  /** Workers asked for (config pool.workers / --workers), >= 1. */
  requestedWorkers: number
  /** Intra-op threads per worker when given (config pool.threads / --threads); else the cores are shared. */
  requestedThreads?: number
  /** Cores to share when threads are not given (os.availableParallelism()). */
  cores: number
  /** Bytes the pool may use (availableMemoryBytes()). */
  availableBytes: number
  /** Bytes mapped once per process: the largest model's weights (modelWeightBytes). */
  modelBytes: number
  /** Bytes each worker adds beside its sessions (estimateWorkerBytes of the largest batch). */
  perWorkerBytes: number
  /**
   * Bytes one scoring session holds (sessionBytes of the model with the most tensors), counted
   * MAIN_SESSIONS times once per process and SESSIONS_PER_WORKER times per worker; 0 when not given.
   */
  sessionBytes?: number
  /** The batch perWorkerBytes was estimated for, named in the reason. */
  batch?: { rows: number; rowTokens: number }
  /** perWorkerBytes includes each worker's own float32 weights (MOE_HARNESS_WEIGHTS=memory), named in the reason. */
  weightsInMemory?: boolean
  /** Fraction of availableBytes the plan may use (default MEMORY_SAFETY). */
  safety?: number
  /** Mappings the pool's processes may hold in all: vm.max_map_count (mapCountLimit()); undefined: no limit (not Linux), mappings cap nothing. */
  mapLimit?: number
  /** Mappings one scoring session adds (sessionMapCount of the model with the most tensors); 0 when not given. */
  mapsPerSession?: number
  /** Mappings this process holds already (mapCount()); 0 when not given. */
  mapsInUse?: number
}

export interface PoolFit {
  workers: number
  threads: number
  /** poolBytes(request, workers) <= safety × availableBytes (and the mappings fit). */
  fits: boolean
  /** Fewer workers than requested. */
  reduced: boolean
  /** The most workers the mapping limit allows (mapsFit; Infinity without a limit); 0: not even one (fitPoolToModels then throws MAP_LIMIT, refuseMapLimit). */
  mapWorkers: number
  /** One line for stderr, starting `pool: `: the choice, the numbers behind it, and the fix when it does not fit. */
  reason: string
}

/**
 * Mappings a session holds for each of its file-backed weights: onnxruntime maps every external-data
 * initializer on its own (one /proc/self/maps line per weight tensor), plus the graph's. Measured
 * (tiny-width Qwen3-30B-A3B shape, 128 experts, onnxruntime-node 1.30, /proc/self/maps before and after):
 * 4 layers, 1575 tensors: a second session added 1576 lines, the first 1664 (its thread pools and arena
 * too); all 48 layers, 18,867 tensors: 18,885 and 19,275. So s = tensors + 100 per session, and a
 * worker's first-session extras (~400) go in WORKER_BASE_MAPS (tests/pool/mapLimit.test.ts checks s).
 */
export const MAPS_PER_SESSION_EXTRA = 100

/**
 * Sessions a pool worker may hold at once (poolWorker.ts MAX_SESSIONS), and sessions the main process
 * holds beside the pool (calibration's, collect.ts, while the pool scores another variant).
 */
export const SESSIONS_PER_WORKER = 2
export const MAIN_SESSIONS = 1

/**
 * Bytes one onnxruntime scoring session holds per weight tensor of its checkpoint, beside the weights'
 * mapped pages (modelBytes) and its activations (estimateWorkerBytes): its state per initializer and
 * per node (the graph has ~7 nodes per tensor: each weight's Reshape, Cast and MatMul), kernels and memory
 * plans, and the pages of the weight file its own mapping of each small tensor touches (RSS counts them
 * once per mapping). It grows with layers × experts, not width: a fresh user's tiny-width (hidden 64)
 * Qwen3-30B-A3B-shaped checkpoint, 48 layers × 128 experts, 18,867 tensors, was planned at ~970 MB for
 * --workers 2 and reached 4.3 GB RSS. Measured (process RSS over the process with the checkpoint open;
 * onnxruntime-node 1.30, openGraphSession as shipped: mapped weights, graph and its optimized form from
 * the cache, 1 thread; two sessions opened, each then scoring 2 × 32 tokens twice; that shape at tiny
 * width, 128 experts; bench/sessionMemory.ts):
 *
 *   layers   tensors   graph nodes   two sessions, scored
 *        1       396         2,995        82 MB
 *        2       789         5,856       133 MB
 *        4     1,575        11,578       231 MB
 *        8     3,147        23,022       437 MB
 *       16     6,291        45,910       823 MB
 *       48    18,867       137,462      2377 MB
 *
 * that is, per session 19 MB + 62 kB per tensor. Of the 62 kB, ~50 kB is held from creation
 * (anonymous memory), ~8 kB is file pages the first run touches, the rest the first run's state. The
 * fixed 19 MB (onnxruntime's library pages, once per process; its thread pool) is in
 * WORKER_OVERHEAD_BYTES; 64 KiB (65.5 kB) rounds the 62 kB up. Creation alone is 10.9 kB per tensor + 5.3 kB per graph node on every
 * checkpoint measured, 4 and 8 experts too, so nodes predict it better, but they are known only once
 * the graph is built: 16 layers × 8 experts (531 tensors, 10 nodes each) took 118 MB for the two
 * where the tensor fit says 104, within this constant's rounding and the worker overhead's margin.
 * A graph not yet cached is built in JS and optimized by onnxruntime while its first session is
 * created: a transient 17 kB per tensor more (48 layers: 1.30 GB peak instead of 0.98).
 */
export const SESSION_BYTES_PER_TENSOR = 64 * 2 ** 10

/** Estimated bytes one scoring session of `ckpt` holds beside the mapped weights and its activations: SESSION_BYTES_PER_TENSOR per weight tensor. */
export function sessionBytes(ckpt: Pick<Checkpoint, 'tensors'>): number {
  return SESSION_BYTES_PER_TENSOR * ckpt.tensors.size
}

/**
 * Bytes the pool's processes hold with `workers` workers (fitPool's rule):
 *   modelBytes + MAIN_SESSIONS × sessionBytes + workers × (perWorkerBytes + SESSIONS_PER_WORKER × sessionBytes).
 */
export function poolBytes(r: Pick<PoolFitRequest, 'modelBytes' | 'perWorkerBytes' | 'sessionBytes'>, workers: number): number {
  const s = r.sessionBytes ?? 0
  return r.modelBytes + MAIN_SESSIONS * s + workers * (r.perWorkerBytes + SESSIONS_PER_WORKER * s)
}

/**
 * Mappings a worker thread adds beside its sessions: its V8 heap (mapped in pages that grow with use),
 * stacks, and onnxruntime's thread pools and arena. Measured: a pool worker with its modules loaded
 * adds 33 lines, its first session ~400 beyond one per tensor (MAPS_PER_SESSION_EXTRA); 1000 leaves
 * room for a heap grown by large batches.
 */
export const WORKER_BASE_MAPS = 1000

/** Fraction of vm.max_map_count the plan may use: the rest covers the method thread's heap, the allocator's arenas and what grows later. */
export const MAP_SAFETY = 0.9

/** Estimated mappings one scoring session of `ckpt` adds: one per weight tensor the graph reads from a file, + MAPS_PER_SESSION_EXTRA. */
export function sessionMapCount(ckpt: Pick<Checkpoint, 'tensors'>): number {
  return ckpt.tensors.size + MAPS_PER_SESSION_EXTRA
}

/**
 * The most pool workers the mapping limit allows (all workers are threads of one process and share its
 * vm.max_map_count): the largest w with
 *   mapsInUse + MAIN_SESSIONS × s + w × (SESSIONS_PER_WORKER × s + WORKER_BASE_MAPS) <= MAP_SAFETY × limit,
 * s = mapsPerSession; Infinity without a limit or without sessions to map; 0 when not even one fits.
 */
export function mapsFit(r: Pick<PoolFitRequest, 'mapLimit' | 'mapsPerSession' | 'mapsInUse'>): number {
  const s = r.mapsPerSession ?? 0
  if (r.mapLimit === undefined || s <= 0) return Infinity
  const left = MAP_SAFETY * r.mapLimit - (r.mapsInUse ?? 0) - MAIN_SESSIONS * s
  return Math.max(0, Math.floor(left / (SESSIONS_PER_WORKER * s + WORKER_BASE_MAPS)))
}

/** The mappings mapsFit counts for `w` workers. */
function mapsFor(r: PoolFitRequest, w: number): number {
  const s = r.mapsPerSession ?? 0
  return (r.mapsInUse ?? 0) + MAIN_SESSIONS * s + w * (SESSIONS_PER_WORKER * s + WORKER_BASE_MAPS)
}

/**
 * Refuses a pool the mapping limit cannot hold even one worker of (fit.mapWorkers 0): MAP_LIMIT, with
 * the limit, the estimate and the fix. Before any calibration: the sweep would otherwise abort the
 * whole process minutes later with a V8 "heap out of memory" (tests/pool/mapLimit.test.ts).
 */
export function refuseMapLimit(fit: PoolFit): void {
  if (fit.mapWorkers === 0) fail('MAP_LIMIT', `no scoring worker can start: ${fit.reason.replace(/^pool: [^:]*: even 1 worker does not fit: /, '')}`)
}

/**
 * The most workers w <= requestedWorkers with poolBytes(r, w) (modelBytes + MAIN_SESSIONS ×
 * sessionBytes + w × (perWorkerBytes + SESSIONS_PER_WORKER × sessionBytes)) <= safety ×
 * availableBytes, never fewer than 1 (when even one does not fit, the pool still runs one worker and
 * the reason says it will likely run out of memory and how to fix it). Threads: as requested, else
 * the cores shared evenly by the chosen workers (src/defaults.ts defaultThreads), so a pool reduced
 * for memory still uses every core. Then capped by memory mappings (mapsFit, when mapLimit and
 * mapsPerSession are given): every worker's sessions map each weight tensor once, in this one process,
 * under the kernel's vm.max_map_count; the reason then says that mappings, not memory or cores, cap the
 * workers, and names the sysctl that raises the limit. When not even one worker's mappings fit,
 * mapWorkers is 0, fits false, and the reason is what refuseMapLimit raises. Pure: no I/O.
 */
export function fitPool(r: PoolFitRequest): PoolFit {
  const safety = r.safety ?? MEMORY_SAFETY
  if (!Number.isInteger(r.requestedWorkers) || r.requestedWorkers < 1) fail('INVALID_ARGUMENT', `pool workers must be a positive integer, got ${r.requestedWorkers}; set pool.workers in the config or --workers.`)
  if (r.requestedThreads !== undefined && (!Number.isInteger(r.requestedThreads) || r.requestedThreads < 1)) fail('INVALID_ARGUMENT', `pool threads must be a positive integer, got ${r.requestedThreads}; set pool.threads in the config or --threads.`)
  if (!(safety > 0 && safety <= 1)) fail('INVALID_ARGUMENT', `memory safety fraction must be in (0, 1], got ${safety}.`)
  for (const [k, v] of [['availableBytes', r.availableBytes], ['modelBytes', r.modelBytes], ['perWorkerBytes', r.perWorkerBytes], ['sessionBytes', r.sessionBytes ?? 0]] as const) {
    if (!Number.isFinite(v) || v < 0) fail('INVALID_ARGUMENT', `fitPool: ${k} must be a non-negative number of bytes, got ${v}.`)
  }
  const budget = safety * r.availableBytes
  const s = r.sessionBytes ?? 0
  const total = (w: number) => poolBytes(r, w)
  const each = r.perWorkerBytes + SESSIONS_PER_WORKER * s
  const most = each > 0 ? Math.floor((budget - total(0)) / each) : r.requestedWorkers
  const mapWorkers = mapsFit(r)
  const byMemory = Math.max(1, Math.min(r.requestedWorkers, most))
  const workers = Math.max(1, Math.min(byMemory, mapWorkers))
  const byMaps = workers < byMemory || mapWorkers === 0
  const threads = r.requestedThreads ?? defaultThreads(workers, r.cores)
  const fits = total(workers) <= budget && mapWorkers >= 1
  const reduced = workers < r.requestedWorkers

  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`
  const at = r.batch ? ` at batches of ${r.batch.rows} x ${r.batch.rowTokens} tokens` : ''
  const own = r.weightsInMemory ? ' (its own float32 weights, MOE_HARNESS_WEIGHTS=memory, and activations)' : ''
  // The sessions last, so the line still begins 'model … once + w x … per worker' as before they were counted.
  const sessions = (w: number) => s > 0 ? ` + ${MAIN_SESSIONS + w * SESSIONS_PER_WORKER} sessions x ${formatBytes(s)} (onnxruntime's state per weight tensor; ${MAIN_SESSIONS} in the main process + ${SESSIONS_PER_WORKER} per worker)` : ''
  const sum = (w: number) => `model ${formatBytes(r.modelBytes)} ${r.weightsInMemory ? 'read' : 'mapped'} once + ${w} x ${formatBytes(r.perWorkerBytes)} per worker${own}${at}${sessions(w)} = ${formatBytes(total(w))}`
  const room = `${Math.round(safety * 100)}% of ${formatBytes(r.availableBytes)} available`
  let reason = `pool: ${plural(workers, 'worker')} x ${plural(threads, 'thread')}`
  if (byMaps) {
    const limit = r.mapLimit!
    const maps = (w: number) => `${mapsFor(r, w)} memory mappings (${r.mapsInUse ?? 0} in use + ${MAIN_SESSIONS + w * SESSIONS_PER_WORKER} sessions x ${r.mapsPerSession} mappings, one per weight tensor, + ${w} x ${WORKER_BASE_MAPS} per worker thread)`
    const limitText = `${Math.round(MAP_SAFETY * 100)}% of the kernel's per-process limit vm.max_map_count ${limit} (pool workers are threads of one process)`
    const fix = `raise the limit: ${MAP_COUNT_FIX}`
    if (mapWorkers === 0) {
      reason += `: even 1 worker does not fit: ${maps(1)} exceed ${limitText}, and past it the process aborts with a misleading "JavaScript heap out of memory"; ${fix}`
      return { workers, threads, fits, reduced, mapWorkers, reason }
    }
    const wanted = Math.min(r.requestedWorkers, byMemory)
    reason += `, reduced from ${plural(r.requestedWorkers, 'requested worker')} because ${wanted} would need ${maps(wanted)}, over ${limitText}, not for memory or cores; ${maps(workers)} fit; for more workers ${fix}`
    if (!(total(workers) <= budget)) reason += `; and even so ${sum(workers)} exceeds ${room}, so scoring will likely run out of memory`
    return { workers, threads, fits, reduced, mapWorkers, reason }
  }
  if (reduced) reason += `, reduced from ${plural(r.requestedWorkers, 'requested worker')} because ${sum(r.requestedWorkers)} exceeds ${room}`
  if (fits) reason += reduced ? `; ${sum(workers)} fits` : ` (${sum(workers)} fits ${room})`
  else {
    // What no batch setting changes: the weights, onnxruntime's sessions and a worker's fixed cost.
    const batchless = total(0) + SESSIONS_PER_WORKER * s + WORKER_OVERHEAD_BYTES
    const smaller = batchless > budget
      ? `a machine with more free memory: the model${s > 0 ? ` and onnxruntime's state of its sessions (${formatBytes(s)} each, one per weight tensor: it grows with layers x experts, not with the batch)` : ''} and a worker's fixed ${formatBytes(WORKER_OVERHEAD_BYTES)} come to ${formatBytes(batchless)} before any batch, so smaller batches cannot help`
      : `${r.batch?.rows === 1
        ? `shorter documents (a subset without the longest) or a model with a smaller context (the batches are already single rows of ${r.batch.rowTokens} tokens, so a lower batchTokens does not help)`
        : 'fewer or shorter batches (a lower batchTokens in the config), a model with a smaller context'}, or a machine with more free memory`
    reason += `${reduced ? '; even 1 worker does not fit' : ''}: ${sum(1)} exceeds ${room}, so scoring will likely run out of memory; use ${smaller}`
  }
  return { workers, threads, fits, reduced, mapWorkers, reason }
}

/** The float32 memory of one worker scoring one batch, by part (bytes); estimateWorkerBytes is their sum. */
export interface WorkerBytes {
  /**
   * Attention scores [B, H, Q, T] three times (MatMul output, + mask, Softmax output), plus the additive
   * mask [B, 1, 1, Q, T], for the Q query rows of one pass (at most sequenceChunks.ts attentionScores:
   * B·H·T² when the whole fits in one pass, else the block limit). Four times in blocks with MLA's nope part, whose
   * scores are the sum of two MatMuls: a tiny-width DeepSeek-V2 at 7000-10,000 tokens peaked up to 4%
   * above a count of three (tests/review7/blocked-memory.test.ts; in one pass it stays at half its
   * estimate).
   */
  attention: number
  /** lm_head logits and their log-softmax for one block of scored positions [min(B·T, headBlock(V)), V]. */
  logits: number
  /** ~10 live hidden-width tensors [B·T, w] (residual, norms, q/k/v, attention output, MoE sum), w = max(d, H·head_dim). */
  hidden: number
  /** Gate, up and activated product of the widest feed-forward per token: top-k × F (+ shared expert), or a dense layer's ffn. */
  ffn: number
  /** Router logits and probabilities [B·T, E] plus the top-k one-hot [B·T, k, E] and routed mask [B·T, E]. */
  router: number
  /** The largest weight matrix cast to float32 at run time and its transposed copy (lm_head: V × d). */
  weights: number
  /** What onnxruntime's allocator holds beyond the parts above: their sum × (ORT_ALLOCATION_FACTOR - 1). */
  allocator: number
  /** WORKER_OVERHEAD_BYTES. */
  overhead: number
}

/**
 * Estimated peak bytes one worker adds while scoring a batch of `rows` rows × `rowTokens` padded
 * tokens (B × T) on `spec`, with the weights themselves counted once per process elsewhere
 * (modelWeightBytes): the float32 tensors live in the scoring graph (src/onnx/moeGraph.ts), times
 * what onnxruntime's allocator holds for them (ORT_ALLOCATION_FACTOR), plus a fixed worker overhead.
 * Conservative by construction: the parts are summed although attention, the expert FFN and the
 * logits are live at different points of the graph (onnxruntime's memory planner reuses their
 * buffers), and every position is counted as scored; that leaves headroom for what is not modelled.
 * Attention and logits are counted per block of rows as a float32 graph computes them at long
 * sequences (src/onnx/sequenceChunks.ts); a half-precision graph (GPUs) keeps them whole, in the
 * device's memory.
 *
 * Not counted: each session's state per weight tensor (sessionBytes: the pool counts it per session);
 * a worker keeps up to two sessions (poolWorker.ts), and onnxruntime's CPU arena keeps each session's
 * peak allocated, so two sessions that both scored their largest batch can hold up to twice the
 * activation parts; and tensors a method edited (merged experts) held as float32 per variant session.
 */
export function estimateWorkerParts(spec: ModelSpec, rows: number, rowTokens: number): WorkerBytes {
  if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(rowTokens) || rowTokens < 1) {
    fail('INVALID_ARGUMENT', `estimateWorkerBytes: rows and rowTokens must be positive integers, got ${rows} x ${rowTokens}.`)
  }
  const B = rows, T = rowTokens, n = B * T
  const H = spec.numHeads, d = spec.hiddenSize, V = spec.vocabSize
  const mla = spec.mla ? H * (spec.mla.qkNopeHeadDim + spec.mla.vHeadDim) : 0
  const width = Math.max(d, H * spec.headDim, mla)
  let ffnPerToken = 0, experts = 0, topK = 0, matrix = V * d
  for (const l of spec.layers) {
    if (l.kind === 'moe') {
      ffnPerToken = Math.max(ffnPerToken, l.topK * l.expertFfn + l.sharedExpertFfn)
      experts = Math.max(experts, l.numExperts)
      topK = Math.max(topK, l.topK)
      matrix = Math.max(matrix, l.expertFfn * d, l.sharedExpertFfn * d)
    } else {
      ffnPerToken = Math.max(ffnPerToken, l.ffn)
      matrix = Math.max(matrix, l.ffn * d)
    }
  }
  matrix = Math.max(matrix, H * spec.headDim * d, mla * (spec.mla?.kvLoraRank ?? 0))
  const scores = attentionScores(B, H, T)
  const live = {
    attention: ((scores < B * H * T * T && spec.mla?.qkNopeHeadDim ? 4 : 3) * scores + scores / H) * F32,
    logits: 2 * Math.min(n, headBlock(V)) * V * F32,
    hidden: 10 * n * width * F32,
    ffn: 3 * n * ffnPerToken * F32,
    router: n * experts * (topK + 3) * F32,
    weights: 2 * matrix * F32,
  }
  const sum = Object.values(live).reduce((a, b) => a + b, 0)
  return { ...live, allocator: sum * (ORT_ALLOCATION_FACTOR - 1), overhead: WORKER_OVERHEAD_BYTES }
}

/** Sum of estimateWorkerParts (bytes). */
export function estimateWorkerBytes(spec: ModelSpec, rows: number, rowTokens: number): number {
  return Object.values(estimateWorkerParts(spec, rows, rowTokens)).reduce((a, b) => a + b, 0)
}

/**
 * The batch shape that costs a worker the most under a padded-token budget (config batchTokens;
 * src/engine/packing.ts planBatches keeps rows × width <= batchTokens, except one request longer than
 * the budget, which goes alone): rows of the longest request the sweep builds (`longestRequest`, an
 * upper bound in tokens: src/tasks/requestBound.ts; a multiple-choice row, its choices packed after
 * the context, may be longer than the context), else of the model's longest sequence
 * (max_position_embeddings, or the sliding window that caps it); as many
 * as the budget holds, but never more than `mostRequests` when given: planBatches puts one request (all
 * its branches) in a row and packs only the requests scored together, one task's (src/tasks/
 * requestBound.ts requestCountBound), so a budget of a million tokens over a 40-request task plans 40
 * rows, not 488 that can never exist. Attention grows with B·T² = tokens × T, so wide rows cost the
 * most, but narrower rows can fill more of a budget that is not a multiple of the widest (2048 tokens
 * hold one row of 1100 tokens or two of 1024; an OLMoE-shaped worker needs 3.7 vs 4.6 GB): every
 * width T <= the widest is tried with the most rows it allows, min(floor(batchTokens / T),
 * mostRequests), and the costliest (estimateWorkerBytes) is the worst batch, the widest among equals.
 * O(sqrt(batchTokens)) widths: only where the row count changes. A request longer than the budget goes
 * alone in its batch.
 */
export function worstBatch(spec: ModelSpec, batchTokens: number, longestRequest?: number, mostRequests?: number): { rows: number; rowTokens: number } {
  const context = Math.min(spec.maxPositions, spec.slidingWindow ?? Infinity)
  // Not capped at the context: a multiple-choice row packs every choice after it (requestBound.ts says how far).
  const widest = longestRequest !== undefined ? Math.max(1, Math.ceil(longestRequest)) : context
  // A row holds at least one token and one request.
  const most = Math.max(1, Math.min(Math.floor(batchTokens), mostRequests !== undefined ? Math.ceil(mostRequests) : Infinity))
  let worst = { rows: Math.min(most, Math.max(1, Math.floor(batchTokens / widest))), rowTokens: widest }
  let worstBytes = estimateWorkerBytes(spec, worst.rows, worst.rowTokens)
  for (let r = worst.rows + 1; r <= most;) {
    const rowTokens = Math.min(widest, Math.floor(batchTokens / r))
    const rows = Math.min(most, Math.floor(batchTokens / rowTokens))
    const bytes = estimateWorkerBytes(spec, rows, rowTokens)
    if (bytes > worstBytes) [worst, worstBytes] = [{ rows, rowTokens }, bytes]
    r = rows + 1
  }
  return worst
}

/**
 * One sequence of `tokens` tokens scored in one process: what it needs (resident weights, `weightBytes`, +
 * the worker estimate of a one-row batch: the pool's rule, estimateWorkerBytes), whether that fits within
 * MEMORY_SAFETY of `availableBytes`, and the longest sequence that would (0: none; every shorter one fits
 * too). The need never falls as the sequence lengthens (attention in one pass grows with its square,
 * then stays at one block's limit, sequenceChunks.ts attentionScores; the rest grows linearly;
 * tests/review7/sequence-fit.test.ts), so the longest fitting length is found by bisection.
 */
export function oneSequenceFit(spec: ModelSpec, tokens: number, weightBytes: number, availableBytes: number): { needBytes: number; fits: boolean; longestFitting: number } {
  const need = (t: number) => weightBytes + estimateWorkerBytes(spec, 1, t)
  const limit = MEMORY_SAFETY * availableBytes
  const needBytes = need(tokens)
  if (needBytes <= limit) return { needBytes, fits: true, longestFitting: tokens }
  let lo = 0, hi = tokens - 1
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2)
    if (need(mid) <= limit) lo = mid
    else hi = mid - 1
  }
  return { needBytes, fits: false, longestFitting: lo > 0 && need(lo) <= limit ? lo : 0 }
}

/**
 * Bytes of the weights the model uses (each stored tensor once: tied embeddings and fused expert
 * stacks viewed per expert are not counted twice). F8 weights count 4 bytes per element, since they
 * are dequantized to float32 in memory rather than mapped.
 */
export function modelWeightBytes(ckpt: Pick<Checkpoint, 'tensors'>): number {
  return sumDistinctTensors(ckpt, t => (t.fp8 ? F32 * numel(t) : t.byteLength))
}

/**
 * Bytes of weights a process holds that the kernel cannot page out, for a refusal to count: none for
 * mapped weights (the checkpoint's own file pages, and derived.bin's: dropped and read back under
 * pressure, so a checkpoint larger than memory still scores, slowly), twice the float32 weights with
 * MOE_HARNESS_WEIGHTS=memory (decoded in JS, then the session's copy).
 */
export function residentWeightBytes(ckpt: Pick<Checkpoint, 'tensors'>, weightsInMemory: boolean): number {
  return weightsInMemory ? 2 * float32WeightBytes(ckpt) : 0
}

/** Bytes of the model's weights decoded to float32 (each stored tensor once, as modelWeightBytes counts them). */
export function float32WeightBytes(ckpt: Pick<Checkpoint, 'tensors'>): number {
  return sumDistinctTensors(ckpt, t => F32 * numel(t))
}

type TensorEntry = Checkpoint['tensors'] extends ReadonlyMap<string, infer T> ? T : never
const numel = (t: TensorEntry) => t.shape.reduce((a, b) => a * b, 1)

/** `bytes` summed over the checkpoint's stored tensors, each once (a file range viewed under several names counts once). */
function sumDistinctTensors(ckpt: Pick<Checkpoint, 'tensors'>, bytes: (t: TensorEntry) => number): number {
  const seen = new Set<string>()
  let total = 0
  for (const t of ckpt.tensors.values()) {
    const key = `${t.file}:${t.offset}`
    if (seen.has(key)) continue
    seen.add(key)
    total += bytes(t)
  }
  return total
}

export interface MemorySources {
  /** Default /proc/meminfo. */
  meminfo?: string
  /** Where the cgroup filesystems are mounted: the v2 hierarchy itself, the v1 controllers under it (memory/); default /sys/fs/cgroup. */
  cgroup?: string
  /** This process's cgroup membership (lines `id:controllers:path`); default /proc/self/cgroup. */
  selfCgroup?: string
}

/** A v1 memory.limit_in_bytes at or above this is "no limit" (the kernel writes 2^63 rounded down to a page). */
const V1_UNLIMITED = 2 ** 60

/**
 * Bytes this process may still allocate: /proc/meminfo MemAvailable (the kernel's estimate of memory
 * available without swapping, page cache included), else os.freemem(); capped by every cgroup memory
 * limit above this process (containers, Slurm jobs' --mem, Kubernetes limits): what each limit leaves
 * beyond its cgroup's working set (usage less inactive file pages, which the kernel reclaims first: the
 * figure kubelet evicts on). The cgroups are this process's own, from /proc/self/cgroup, and their
 * ancestors: cgroup v2 (`0::<path>`, memory.max and memory.current) and v1 (`<id>:memory:<path>`,
 * memory/…/memory.limit_in_bytes and memory.usage_in_bytes). A Slurm job without a cgroup namespace sees
 * the whole hierarchy, so its limit is in its own folder, not at the root; inside a namespace the path
 * is `/` and the limit at the mount's root.
 */
export function availableMemoryBytes(sources: MemorySources = {}): number {
  let available = os.freemem()
  const meminfo = readText(sources.meminfo ?? '/proc/meminfo')
  const m = meminfo && /^MemAvailable:\s+(\d+)\s*kB/m.exec(meminfo)
  if (m) available = Number(m[1]) * 1024
  for (const left of cgroupHeadroom(sources.cgroup ?? '/sys/fs/cgroup', readText(sources.selfCgroup ?? '/proc/self/cgroup') ?? '')) available = Math.min(available, left)
  return available
}

/** What each memory limit over this process leaves (bytes), innermost first. */
function cgroupHeadroom(root: string, membership: string): number[] {
  const lines = membership.split('\n').map(l => l.split(':')).filter(f => f.length >= 3)
  const v2 = lines.find(([id, controllers]) => id === '0' && controllers === '')
  const v1 = lines.find(([, controllers]) => controllers!.split(',').includes('memory'))
  const left: number[] = []
  for (const dir of cgroupFolders(root, v2 ? v2.slice(2).join(':') : '/')) {
    const limit = readNumber(path.join(dir, 'memory.max'))
    if (limit !== undefined) left.push(headroom(limit, readNumber(path.join(dir, 'memory.current')), statField(dir, 'inactive_file')))
  }
  if (v1) {
    for (const dir of cgroupFolders(path.join(root, 'memory'), v1.slice(2).join(':'))) {
      const limit = readNumber(path.join(dir, 'memory.limit_in_bytes'))
      if (limit !== undefined && limit < V1_UNLIMITED) left.push(headroom(limit, readNumber(path.join(dir, 'memory.usage_in_bytes')), statField(dir, 'total_inactive_file')))
    }
  }
  return left
}

/** The folder of cgroup `member` under `base` and each ancestor up to `base`; just `base` when the folder is not there (a namespace mounts one's own cgroup at the root). */
function cgroupFolders(base: string, member: string): string[] {
  const parts = member.split('/').filter(Boolean)
  if (!fs.existsSync(path.join(base, ...parts))) return [base]
  return parts.map((_, i) => path.join(base, ...parts.slice(0, parts.length - i))).concat(base)
}

function headroom(limit: number, usage: number | undefined, inactiveFile: number | undefined): number {
  return Math.max(0, limit - Math.max(0, (usage ?? 0) - (inactiveFile ?? 0)))
}

/** A whole number in a cgroup file ('max' and anything else: undefined). */
function readNumber(file: string): number | undefined {
  const text = readText(file)?.trim()
  return text && /^\d+$/.test(text) ? Number(text) : undefined
}

function statField(dir: string, field: string): number | undefined {
  const m = new RegExp(`^${field} (\\d+)$`, 'm').exec(readText(path.join(dir, 'memory.stat')) ?? '')
  return m ? Number(m[1]) : undefined
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

/** What a sweep's pool is sized by: its models, batch budget and the bounds of its tasks' requests. */
export interface FootprintRequest {
  models: readonly Pick<Checkpoint, 'spec' | 'tensors'>[]
  batchTokens: number
  longestRequest?: (maxLength: number) => number
  mostRequests?: (maxLength: number) => number
  /**
   * MOE_HARNESS_WEIGHTS=memory (engine/graphSession.ts weightResidency): every worker decodes every
   * weight to float32 in its own session; counted as twice those bytes per worker (the decoded copy and
   * onnxruntime's, at peak: one full-width OLMoE layer, 1.25 GB BF16, peaked at 4.8 GB more per worker
   * than mapped). Without it the plan said 2 workers fit in 10 GB and the sweep peaked at 12.6 GB.
   */
  weightsInMemory?: boolean
}

/**
 * The pool of a sweep over `models`: modelBytes is the largest model's weights, sessionBytes the
 * session of the model with the most tensors, perWorkerBytes the
 * largest worker estimate over the models at the worst batch of `batchTokens` (rows as long as
 * `longestRequest(maxLength)` when given: the sweep's requests at a model's context; at most
 * `mostRequests(maxLength)` rows when given: the most requests one task of the sweep builds there);
 * available memory and cores are read from this machine unless given, and so are the mapping limit and
 * this process's mappings (mapsPerSession: sessionMapCount of the model with the most tensors).
 * Throws MAP_LIMIT (refuseMapLimit) when the mapping limit cannot hold even one worker: runSweep calls
 * this before any calibration, so the sweep stops at once rather than aborting minutes later.
 */
export function fitPoolToModels(o: FootprintRequest & {
  requestedWorkers: number
  requestedThreads?: number
  availableBytes?: number
  cores?: number
  /** vm.max_map_count; default mapCountLimit() (undefined off Linux: no limit). `null`: no limit. */
  mapLimit?: number | null
  /** Mappings this process holds; default mapCount(). */
  mapsInUse?: number
}): PoolFit {
  const { modelBytes, perWorkerBytes, sessionBytes, batch } = poolFootprint(o)
  // Weights in memory are not mapped: a session then holds only its own few mappings.
  const mapsPerSession = Math.max(0, ...o.models.map(m => o.weightsInMemory ? MAPS_PER_SESSION_EXTRA : sessionMapCount(m)))
  const fit = fitPool({
    requestedWorkers: o.requestedWorkers, requestedThreads: o.requestedThreads,
    cores: o.cores ?? os.availableParallelism(), availableBytes: o.availableBytes ?? availableMemoryBytes(),
    modelBytes, perWorkerBytes, sessionBytes, batch, weightsInMemory: o.weightsInMemory,
    mapLimit: o.mapLimit === null ? undefined : o.mapLimit ?? mapCountLimit(), mapsPerSession, mapsInUse: o.mapsInUse ?? mapCount() ?? 0,
  })
  refuseMapLimit(fit)
  return fit
}

/**
 * The terms of fitPoolToModels' rule (bytes; poolBytes sums them): modelBytes, the largest model's
 * weights (modelWeightBytes), held once per process; sessionBytes, the largest model's session by
 * tensors (sessionBytes), held MAIN_SESSIONS times per process and SESSIONS_PER_WORKER times per
 * worker; perWorkerBytes, the largest worker estimate over the models at each one's worst batch
 * (estimateWorkerBytes at worstBatch; + 2 × its float32 weights with weightsInMemory), with that
 * batch. Pure. `sweep --slurm` and `--k8s-manifest` size their memory requests from the same terms.
 */
export function poolFootprint(o: FootprintRequest): { modelBytes: number; perWorkerBytes: number; sessionBytes: number; batch?: { rows: number; rowTokens: number } } {
  let modelBytes = 0, perWorkerBytes = 0, sessions = 0
  let batch: { rows: number; rowTokens: number } | undefined
  for (const ckpt of o.models) {
    modelBytes = Math.max(modelBytes, modelWeightBytes(ckpt))
    sessions = Math.max(sessions, sessionBytes(ckpt))
    const worst = worstBatch(ckpt.spec, o.batchTokens, o.longestRequest?.(ckpt.spec.maxPositions), o.mostRequests?.(ckpt.spec.maxPositions))
    const bytes = estimateWorkerBytes(ckpt.spec, worst.rows, worst.rowTokens) + (o.weightsInMemory ? 2 * float32WeightBytes(ckpt) : 0)
    if (bytes > perWorkerBytes) [perWorkerBytes, batch] = [bytes, worst]
  }
  return { modelBytes, perWorkerBytes, sessionBytes: sessions, batch }
}
