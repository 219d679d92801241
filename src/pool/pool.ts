// The scoring worker pool (piscina). Workers × intra-op threads should not exceed the cores. The main
// thread packs batches and owns the database; workers only turn token ids into numbers. A worker's
// HarnessError arrives here as data and is rethrown with the same code, message and context.
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import { fail, HarnessError } from '../errors.ts'
import { nearMapLimit } from '../util/memoryMaps.ts'
import type { BatchRunner } from '../engine/scorer.ts'
import type { Device } from '../ort/ort.ts'
import type { WorkerResult, WorkerTask } from './poolWorker.ts'

export interface PoolOptions {
  workers: number
  threads: number
  device: Device
  /** Model folders whose NaN/Inf weights workers score instead of refusing (--allow-nonfinite / config allowNonfinite). */
  allowNonfinite?: readonly string[]
}

export interface ScoringPool {
  /** A batch runner bound to one prepared variant folder. */
  runner(variantDir: string): BatchRunner
  /** Seconds workers spent building sessions, and running batches, so far (summed over workers). */
  buildSeconds(): number
  runSeconds(): number
  /**
   * Wall-clock seconds between `from` and `to` (performance.now() milliseconds) that scoring in the
   * sessions `sessions` (BatchRunner results' `session`) lost to workers getting ready: starting (a
   * worker's first batch) or building one of those sessions. Per worker the time it spent so within
   * the interval, then the most of any worker; see openingSeconds below.
   */
  openingSeconds(sessions: ReadonlySet<string>, from: number, to: number): number
  close(): Promise<void>
}

/** How long close() waits for workers still loading their modules before terminating them anyway. */
const WORKER_LOAD_WAIT_MS = 30_000

export function createPool(options: PoolOptions): ScoringPool {
  if (options.workers * options.threads > os.availableParallelism()) {
    process.stderr.write(`warning: ${options.workers} workers × ${options.threads} threads exceed the ${os.availableParallelism()} cores; throughput will suffer\n`)
  }
  // Started at the first batch, not before: a sweep that fails or is interrupted while it calibrates
  // or prepares variants never starts (and so never tears down half-loaded) workers.
  let piscina: Piscina | undefined
  let started = 0
  let loaded = 0
  const start = (): Piscina => {
    if (piscina) return piscina
    piscina = new Piscina({
      filename: fileURLToPath(new URL('./poolWorker.mjs', import.meta.url)),
      minThreads: options.workers,
      maxThreads: options.workers,
      idleTimeout: 60_000,
      concurrentTasksPerWorker: 1,
    })
    piscina.on('workerCreate', () => { started++ })
    piscina.on('message', (m: unknown) => { if ((m as { moeHarnessWorkerLoaded?: boolean })?.moeHarnessWorkerLoaded) loaded++ })
    return piscina
  }
  let build = 0
  let runTime = 0
  /** When each worker was starting (session null: it held up every session) or building a session, ms. */
  const opening: Opening[] = []
  // Terminating a worker while onnxruntime is inside run() or session creation aborts the whole
  // process (an uncaught Napi::Error), so close() lets the tasks in flight finish first.
  const inflight = new Set<Promise<unknown>>()
  return {
    runner(variantDir) {
      return async batch => {
        const task: WorkerTask = { variantDir, batch, device: options.device, threads: options.threads, ...(options.allowNonfinite?.length ? { allowNonfinite: [...options.allowNonfinite] } : {}) }
        let result: WorkerResult
        const submitted = performance.now()
        try {
          const running = start().run(task) as Promise<WorkerResult>
          inflight.add(running)
          void running.catch(() => {}).finally(() => inflight.delete(running))
          result = await running
        } catch (e) {
          // The worker itself died (out of memory, a native crash): there is no error data to rebuild.
          // Near vm.max_map_count, V8's "out of memory" is a refused mapping, not the heap: say so.
          const maps = nearMapLimit()
          if (maps) fail('MAP_LIMIT', `worker failed: ${(e as Error)?.message ?? String(e)}; but ${maps}`, e)
          fail('SESSION_FAILED', `worker failed: ${(e as Error)?.message ?? String(e)}`, e)
        }
        if (!result.ok) throw HarnessError.fromData(result.error)
        build += result.buildSeconds
        runTime += result.runSeconds
        // A worker's first batch waited for it to start (the pool starts its workers with the first batch).
        if (result.readyAt !== null && result.readyAt > submitted) opening.push({ worker: result.worker, session: null, from: submitted, to: result.readyAt })
        if (result.buildSeconds > 0) opening.push({ worker: result.worker, session: result.session, from: result.buildFrom, to: result.buildFrom + 1000 * result.buildSeconds })
        return { logprobs: result.logprobs, greedy: result.greedy, session: result.session }
      }
    },
    buildSeconds: () => build,
    runSeconds: () => runTime,
    openingSeconds: (sessions, from, to) => openingSeconds(opening, sessions, from, to),
    async close() {
      await Promise.allSettled([...inflight])
      if (!piscina) return
      // A worker still instantiating its modules must not be terminated (see poolWorker.mjs); one that
      // failed to load never reports, hence the bound.
      const until = Date.now() + WORKER_LOAD_WAIT_MS
      while (loaded < Math.max(started, options.workers) && Date.now() < until) await new Promise(r => setTimeout(r, 20))
      await piscina.destroy()
    },
  }
}

interface Opening { worker: number; session: string | null; from: number; to: number }

/**
 * The wall time a cell (scoring in `sessions` from `from` to `to`) lost to workers getting ready, in
 * seconds: per worker the part of [from, to] it spent starting or building one of those sessions (for
 * whichever cell's batch triggered it: two cells of a variant scored at once in two lanes both wait
 * for its build), then the most of any worker, not the sum. Workers get ready concurrently: at a
 * variant's first cell every worker that lacks its session builds one at the same time, so N workers
 * building B seconds each delay the cell by about B, not N × B (a sum would exceed the cell's wall
 * time). The most of any worker is also right when fewer batches than workers ran (the idle ones lost
 * nothing) and when a worker built later, after scoring another variant's batches (its share of this
 * cell's batches waited B all the same); it is an upper bound when builds were staggered within the
 * cell (another worker scored meanwhile).
 */
function openingSeconds(opening: readonly Opening[], sessions: ReadonlySet<string>, from: number, to: number): number {
  const perWorker = new Map<number, number>()
  for (const o of opening) {
    if (o.session !== null && !sessions.has(o.session)) continue
    const overlap = Math.min(to, o.to) - Math.max(from, o.from)
    if (overlap > 0) perWorker.set(o.worker, (perWorker.get(o.worker) ?? 0) + overlap)
  }
  return Math.max(0, ...perWorker.values()) / 1000
}
