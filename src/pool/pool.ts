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
  // Terminating a worker while onnxruntime is inside run() or session creation aborts the whole
  // process (an uncaught Napi::Error), so close() lets the tasks in flight finish first.
  const inflight = new Set<Promise<unknown>>()
  return {
    runner(variantDir) {
      return async batch => {
        const task: WorkerTask = { variantDir, batch, device: options.device, threads: options.threads, ...(options.allowNonfinite?.length ? { allowNonfinite: [...options.allowNonfinite] } : {}) }
        let result: WorkerResult
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
        return { logprobs: result.logprobs, greedy: result.greedy }
      }
    },
    buildSeconds: () => build,
    runSeconds: () => runTime,
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
