// Runs a method's apply / applyLayer in a worker thread (applyWorker.ts), so the main thread's event
// loop keeps running while the method computes: the sweep's lease heartbeat (src/sweep/leases.ts) keeps
// the cells being scored reserved, progress prints, and a second Ctrl-C quits at once (process.exit
// ends the worker with the process; the spill folder is the main thread's and removed at exit).
// Same results, bit for bit: the worker runs the same applyMethod / startMethod on the same checkpoint
// files, statistics (copied), parameters and seed key.
//
// The main thread applies the method itself (applyMethod / startMethod) only when a worker cannot load
// the same code: a method object with no file in methods/ (built in a test), or a method file (or a
// project file it imports) edited since this process loaded it, whose variant id names the code loaded
// first (registry.ts methodFileHash).
//
// One method runs at a time per process (the worker's requests queue here), as when every apply ran on
// the main thread: each holds up to the spill budget of edited tensors plus its own working memory.
import { fileURLToPath } from 'node:url'
import v8 from 'node:v8'
import { Worker } from 'node:worker_threads'
import { failIn, HarnessError } from '../errors.ts'
import type { StatNeed, StatsData } from '../calibration/stats.ts'
import { spillBudgetBytes, spillFolderPath } from '../edits/overrideSpill.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { applyMethod, startMethod, type AppliedMethod, type MethodRunOptions } from './applyMethod.ts'
import type { MethodDefinition } from './defineMethod.ts'
import { nearMapLimit } from '../util/memoryMaps.ts'
import { methodFileHash, methodNames, needsOf, pluginLocation, unprunedNeedsOf, type ParamValues } from './registry.ts'
import type { ApplyReply, ApplyRequest, ApplyStart } from './applyWorker.ts'

const ENTRY = fileURLToPath(new URL('./applyWorker.mjs', import.meta.url))

/** A method applied layer by layer (sequential calibration) in a worker. */
export interface LayerwiseRun {
  /** The edits so far (live object, updated after each layer: src/calibration/sequential.ts reads it). */
  readonly edits: VariantEdits
  /** applyLayer for MoE layer `index`; `stats` holds (at least) that layer's entries. */
  layer(index: number, stats: StatsData): Promise<void>
  /** Validates the edits and returns the combined report (MethodRun.finish); the worker is free again. */
  finish(): Promise<AppliedMethod>
  /** Frees the worker when finish did not (an error elsewhere between two layers); safe to call twice. */
  close(): Promise<void>
}

/** applyMethod (one-pass statistics: apply, or applyLayer for every layer) in a worker; same arguments, same result. */
export async function applyMethodInWorker(method: MethodDefinition, params: ParamValues, ckpt: Checkpoint, stats: StatsData | undefined, seedKey: string, options: MethodRunOptions = {}): Promise<AppliedMethod> {
  // The thread's start is queued too: the preparations a sweep's lanes ask for at once take the kept
  // thread in turn, where each started its own (~40 MB and a CPU second apiece) only to wait here.
  return oneAtATime(async () => {
    for (let fresh = false; ; fresh = true) {
      const worker = await MethodWorker.start(method, params, ckpt, seedKey, 'one-pass', undefined, options, fresh)
      if (!worker) return applyMethod(method, params, ckpt, stats, seedKey, undefined, options)
      try {
        const needs = [...needsOf(method, params), ...unprunedNeedsOf(method, params)]
        return expect(await worker.request({ kind: 'apply', ...(stats ? { stats: onlyNeeds(stats, needs) } : {}) }), 'done').applied
      } catch (e) {
        if (!fresh && worker.stoppedAfterReuse) continue // see stoppedAfterReuse: once more on a thread of its own
        throw e
      } finally {
        await worker.release()
      }
    }
  })
}

/** startMethod (sequential calibration drives it layer by layer) in a worker. */
export async function startMethodInWorker(method: MethodDefinition, params: ParamValues, ckpt: Checkpoint, seedKey: string, unpruned: StatsData | undefined, options: MethodRunOptions = {}): Promise<LayerwiseRun> {
  const worker = await MethodWorker.start(method, params, ckpt, seedKey, 'layers', unpruned && onlyNeeds(unpruned, unprunedNeedsOf(method, params)), options)
  if (!worker) {
    const run = startMethod(method, params, ckpt, seedKey, unpruned, options)
    return { edits: run.edits, layer: (i, s) => oneAtATime(() => run.layer(i, s)), finish: async () => run.finish(), close: async () => {} }
  }
  const edits: VariantEdits = { layers: {}, overrides: {} }
  let released = false
  // A run left between two layers holds its edits in the thread: that thread is ended, not kept.
  const release = async (finished: boolean) => {
    if (!released) await worker.release(finished)
    released = true
  }
  return {
    edits,
    async layer(index, stats) {
      worker.phase = `applyLayer ${index}` // the phase applyMethod gives an error thrown there
      const delta = expect(await oneAtATime(() => worker.request({ kind: 'layer', index, stats: layerOf(stats, index) })), 'layer').edits
      for (const l of Object.keys(edits.layers)) delete edits.layers[Number(l)]
      Object.assign(edits.layers, delta.layers)
      Object.assign(edits.overrides, delta.overrides)
    },
    async finish() {
      worker.phase = 'apply'
      try {
        const applied = expect(await worker.request({ kind: 'finish' }), 'done').applied
        // The worker's own edits from now on (in-memory tensors moved here, stored ones as spilled), in the live object.
        Object.assign(edits, applied.edits)
        return { ...applied, edits }
      } finally {
        await release(true)
      }
    },
    close: () => release(false),
  }
}

let queue: Promise<unknown> = Promise.resolve()
/** Runs `fn` after every method request queued before it. */
function oneAtATime<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn)
  queue = run.catch(() => {})
  return run
}

/** The statistics a method may read (its needs), not every table a sweep collected for all its methods: less to copy. */
function onlyNeeds(stats: StatsData, needs: readonly StatNeed[]): StatsData {
  const out: StatsData = { info: stats.info }
  for (const need of new Set(needs)) if (stats[need] !== undefined) (out as unknown as Record<string, unknown>)[need] = ownBuffers(stats[need])
  return out
}

/** Layer `index`'s entries of every table (the worker keeps the earlier layers' entries). */
function layerOf(stats: StatsData, index: number): StatsData {
  const out: Record<string, unknown> = { info: stats.info }
  for (const [key, table] of Object.entries(stats)) {
    if (key !== 'info' && table && (table as Record<number, unknown>)[index] !== undefined) out[key] = { [index]: ownBuffers((table as Record<number, unknown>)[index]) }
  }
  return out as unknown as StatsData
}

/**
 * `value` with every typed array that views part of a larger buffer copied into its own (same values).
 * Statistics read from the calibration cache are views into the whole file's buffer (v8.deserialize),
 * and a structured clone copies a view's entire buffer: every table of every need the sweep collected,
 * for a method that reads one (hundreds of MB at real size, per apply).
 */
function ownBuffers<T>(value: T): T {
  if (ArrayBuffer.isView(value)) {
    if (value.byteLength === value.buffer.byteLength || value instanceof DataView) return value
    return (Buffer.isBuffer(value) ? Buffer.from(value) : (value as unknown as Float64Array).slice()) as T // Buffer#slice would be a view
  }
  if (Array.isArray(value)) return value.map(ownBuffers) as T
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, ownBuffers(v)])) as T
  return value
}

/** A thread that V8 ended at its heap limit (Node's ERR_WORKER_OUT_OF_MEMORY). */
const outOfHeap = (e: unknown) => (e as { code?: unknown } | null)?.code === 'ERR_WORKER_OUT_OF_MEMORY'
/** A thread that could not be started (Node's ERR_WORKER_INIT_FAILED: no thread, no isolate). */
const initFailed = (e: unknown) => (e as { code?: unknown } | null)?.code === 'ERR_WORKER_INIT_FAILED'

function expect<K extends ApplyReply['kind']>(reply: ApplyReply, kind: K): Extract<ApplyReply, { kind: K }> {
  if (reply.kind === 'error') throw HarnessError.fromData(reply.error)
  if (reply.kind === 'crash') {
    const e = new Error(reply.message)
    e.name = reply.name
    if (reply.stack) e.stack = reply.stack
    throw e
  }
  if (reply.kind !== kind) throw new Error(`method worker answered '${reply.kind}' where '${kind}' was expected`)
  return reply as Extract<ApplyReply, { kind: K }>
}

/**
 * One worker thread: one request at a time, each answered by one reply. Kept for the next method once
 * idle (one idle thread per process, unreferenced, so it never keeps the process alive): starting a
 * thread costs about a second (tsx and the harness's modules), a real method seconds to minutes.
 */
class MethodWorker {
  private static idle: MethodWorker | undefined
  private waiting?: { resolve: (r: ApplyReply) => void; reject: (e: unknown) => void }
  private stopped = false
  /** Taken over from the method before it (kept idle) rather than started for this method. */
  private reused = false
  /** Ends release()'s wait for terminate() when the thread stops first ('error' or 'exit'). */
  private onStop?: () => void
  /** Why the thread stopped (a plugin's stray error, between two layers too: the next request fails with it). */
  private stoppedBy: HarnessError | undefined
  private method = ''
  /** The phase a thread that stops or fails outside a request is blamed on: 'apply', or the layer a run layer by layer is in. */
  phase = 'apply'

  private constructor(private readonly worker: Worker) {
    worker.on('message', (reply: ApplyReply) => this.settle(w => w.resolve(reply)))
    // Thrown outside a request (a plugin's stray promise or timer): the method failed, located in its file
    // when the stack says where. Between two layers nobody waits yet: the next request is answered with it.
    // The thread ends itself after an error (Node terminates a worker on an uncaught exception): it is
    // stopped from here on, whether or not its 'exit' event ever reaches this thread (below).
    // Near vm.max_map_count a thread is stopped as out of heap, or cannot start at all, for want of a
    // mapping: MAP_LIMIT, the machine's limit (the sweep stores no failed variant), not the method's failure.
    worker.on('error', e => {
      const maps = outOfHeap(e) || initFailed(e) ? nearMapLimit() : undefined
      this.stoppedBy ??= maps ? this.failed(e, `its worker thread ${outOfHeap(e) ? 'was stopped as out of memory, but not by the method or the JavaScript heap' : `could not start (${e.message})`}: ${maps}`, 'MAP_LIMIT')
        : this.failed(e, outOfHeap(e) ? this.outOfHeapMessage() : `${e instanceof Error ? e.message : String(e)}${pluginLocation(e, this.method)}`)
      this.stop()
    })
    worker.on('exit', code => {
      this.stoppedBy ??= this.failed(undefined, `its worker thread stopped (exit code ${code}) before the method finished; a method must not call process.exit.`)
      this.stop()
    })
  }

  /**
   * A worker running the method on the checkpoint's folder, once it has loaded the method and opened the
   * checkpoint; undefined when the main thread must apply it (no file, or other code than this process loaded).
   */
  static async start(method: MethodDefinition, params: ParamValues, ckpt: Checkpoint, seedKey: string, mode: ApplyStart['mode'], unpruned: StatsData | undefined, options: MethodRunOptions, fresh = false): Promise<MethodWorker | undefined> {
    if (!methodNames().includes(method.name)) return undefined
    const start: ApplyStart = {
      method: method.name, codeHash: methodFileHash(method.name), params, seedKey, mode,
      checkpoint: { dir: ckpt.dir, allowNonfinite: ckpt.allowNonfinite },
      spillBytes: options.spillBytes ?? spillBudgetBytes(), spillFolder: spillFolderPath(),
      ...(unpruned ? { unpruned } : {}), env: { ...process.env },
    }
    let w = fresh ? undefined : MethodWorker.idle
    if (w) MethodWorker.idle = undefined
    if (w) w.reused = true
    else {
      w = new MethodWorker(new Worker(ENTRY))
      w.method = method.name // a thread that fails to load names the method it was started for
      expect(await w.next(), 'loaded')
    }
    w.method = method.name
    w.phase = 'apply'
    let first: ApplyReply
    try {
      first = await w.request({ kind: 'start', ...start })
    } catch (e) {
      await w.release()
      if (!fresh && w.stoppedAfterReuse) return MethodWorker.start(method, params, ckpt, seedKey, mode, unpruned, options, true)
      throw e
    }
    if (first.kind === 'ready') return w
    await w.release()
    if (first.kind === 'stale') return undefined
    return expect(first, 'ready') as never // throws the worker's error
  }

  /**
   * A kept thread that stopped under the method that took it over: the stray error (or exit) may be the
   * method before's, a timer or promise of its plugin that fired after its reply; it is not this method's
   * failure. The method runs once more on a thread of its own, where an error of its own comes again
   * (tests/methods/apply-worker-idle-stray.test.ts). Not retried: a layer-by-layer run after its start.
   */
  get stoppedAfterReuse(): boolean {
    return this.reused && this.stopped
  }

  request(req: ApplyRequest): Promise<ApplyReply> {
    const reply = this.next()
    this.worker.postMessage(req)
    return reply
  }

  /**
   * Keeps the thread for the next method (`keep`, and none is kept yet), else ends it. Only after its
   * `loaded` reply: terminating a thread still instantiating its modules aborts the process (pool.ts).
   */
  async release(keep = true): Promise<void> {
    if (this.stopped) return
    if (keep && !MethodWorker.idle) {
      MethodWorker.idle = this
      this.worker.unref()
    } else {
      // Referenced (by terminate) until it ends: by terminate() or on its own, whichever is first. A thread
      // already ending itself after an uncaught error (its 'error' still on its way here) may never emit
      // 'exit' once terminate() is called (Node 20): that terminate() never settles, and the process quits
      // with code 13 and no output (tests/methods/apply-worker-terminate-race.test.ts).
      await new Promise<void>(resolve => {
        this.onStop = resolve
        void this.worker.terminate().then(() => resolve())
      })
    }
  }

  private next(): Promise<ApplyReply> {
    if (this.stopped) return Promise.reject(this.stoppedBy ?? this.failed(undefined, 'its worker thread has stopped.'))
    this.worker.ref() // an idle worker never keeps the process alive; one being waited for does
    return new Promise((resolve, reject) => { this.waiting = { resolve, reject } })
  }

  private settle(fn: (w: NonNullable<MethodWorker['waiting']>) => void): void {
    const w = this.waiting
    this.waiting = undefined
    this.worker.unref()
    if (w) fn(w)
  }

  /**
   * The thread has ended or is ending on its own: the request waiting (if any) fails with why, and it is
   * never kept, referenced or terminated again. Node 20 can drop the 'exit' event of a thread that ended
   * itself after an uncaught error once terminate() is called on it, and that terminate() never settles:
   * a process with nothing else to do then quits with code 13 and no output (seen 12 in 60 runs under load).
   */
  private stop(): void {
    this.stopped = true
    if (MethodWorker.idle === this) MethodWorker.idle = undefined
    this.settle(w => w.reject(this.stoppedBy))
    this.onStop?.()
  }

  /**
   * V8 ended the thread at its heap limit (ERR_WORKER_OUT_OF_MEMORY): the limit is the process's
   * (--max-old-space-size, or V8's default for the machine), the same as the main thread's, and
   * counts JavaScript objects and arrays, not typed arrays' memory. Not used when the process's
   * mappings are near vm.max_map_count (nearMapLimit): V8 then reports a refused mmap as out of heap
   * with the heap far below its limit, whatever the method does.
   */
  private outOfHeapMessage(): string {
    const mb = Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20)
    return `ran out of JavaScript heap (${mb} MB, V8's limit for this process, not the machine's memory)${pluginLocation(undefined, this.method)}: keep large numeric data in typed arrays (Float32Array, Float64Array: outside the heap) rather than arrays or objects, or raise the limit with NODE_OPTIONS=--max-old-space-size=<MB>.`
  }

  private failed(cause: unknown, message: string, code: 'METHOD_FAILED' | 'MAP_LIMIT' = 'METHOD_FAILED'): HarnessError {
    try {
      return failIn({ method: this.method, phase: this.phase }, code, message, cause)
    } catch (e) {
      return e as HarnessError
    }
  }
}
