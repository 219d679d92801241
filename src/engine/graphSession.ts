// Opens an onnxruntime session on the scoring graph of (checkpoint, edits, options): the one place
// the scorer, the pool worker and calibration get sessions from, so all of them map weights the same way.
import fs from 'node:fs'
import { harnessHome } from '../defaults.ts'
import { fail } from '../errors.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { buildScoringGraph, type GraphOptions } from '../onnx/moeGraph.ts'
import type { ComputePrecision } from '../onnx/precision.ts'
import { float16Overflows, releaseTemporary, storedScoringGraph, type Float16Overflow, type StoredGraph } from '../onnx/graphStore.ts'
import { createSession, type Device, type Session } from '../ort/ort.ts'

/**
 * How the session holds the weights:
 * - 'mapped' (default): the checkpoint's files are memory-mapped in their stored dtype and half
 *   precision is widened per use (moeGraph.ts WeightLoader), and the graph is cached on disk under
 *   <cacheDir>/graphs (graphStore.ts; see graphCacheRoot). Peak memory ≈ the checkpoint's bytes once per process.
 * - 'memory': every weight decoded to float32 in JS and copied into the session (the pre-issue-10
 *   engine): ~2x the bytes of a half-precision checkpoint resident, plus a transient copy at creation;
 *   about 10% faster per token on CPU. Chosen with $MOE_HARNESS_WEIGHTS=memory.
 */
export type WeightResidency = 'mapped' | 'memory'

export interface GraphSessionSettings {
  device: Device
  threads: number
  /** The harness folder the graph cache lives under (default: harnessHome()). */
  cacheDir?: string
  weights?: WeightResidency
  /** The graph's compute dtype (onnx/precision.ts); default: defaultPrecision(device). */
  precision?: ComputePrecision
}

export interface GraphSession extends Session {
  /** Whether the graph came from the on-disk cache (no graph build). */
  readonly graphFromCache: boolean
  /** The dtype the graph computes in. */
  readonly precision: ComputePrecision
}

/**
 * The compute dtype a device gets unless told otherwise: float32 on the CPU (onnxruntime's CPU provider
 * computes float16 nodes in float32 anyway, through inserted Casts), float16 on GPUs, as transformers
 * runs these models in half precision there (a float32 Mixtral-8x7B is 188 GB). WebGPU has no bfloat16.
 */
export function defaultPrecision(device: Device): ComputePrecision {
  return device === 'cpu' ? 'float32' : 'float16'
}

/** The precision a session will use; refuses combinations the execution provider cannot run. */
export function resolvePrecision(device: Device, chosen?: ComputePrecision): ComputePrecision {
  const precision = chosen ?? defaultPrecision(device)
  if (precision === 'bfloat16' && device !== 'cuda') {
    fail('INVALID_ARGUMENT', `--precision bfloat16 needs --device cuda: onnxruntime's ${device === 'cpu' ? 'CPU provider has no bfloat16 kernels for most nodes (e.g. Mul)' : 'WebGPU provider has no bfloat16 type'}. Use --precision float16 or float32.`)
  }
  return precision
}

/**
 * A half-precision graph overflows where float16 cannot hold a value (|x| > 65504): its outputs turn
 * Inf/NaN. run() refuses such outputs (NUMERIC_FAILURE) rather than let NaN scores into the results,
 * unless the checkpoint was opened with allowNonfinite (its NaN/Inf weights are then expected to show).
 */
function refuseNonfinite(session: Session, precision: ComputePrecision): Session['run'] {
  return async (feeds, outputs) => {
    const out = await session.run(feeds, outputs)
    for (const [name, t] of Object.entries(out)) {
      if (!(t.data instanceof Float32Array)) continue
      let bad = 0
      for (const v of t.data) if (!Number.isFinite(v)) bad++
      if (bad) {
        fail('NUMERIC_FAILURE', `The ${precision} graph returned ${bad} non-finite values in '${name}' (of ${t.data.length}): a weight or activation of this model exceeds ${precision}'s range (largest finite float16: 65504; bfloat16 and float32 reach 3.4e38), so scores would be NaN. Score it in float32: --precision float32${session.device === 'cpu' ? '' : ' (or --device cpu)'}${precision === 'float16' && session.device === 'cuda' ? ', or --precision bfloat16 on --device cuda' : ''}.`)
      }
    }
    return out
  }
}

/** NUMERIC_FAILURE naming the weights a float16 graph cannot hold (graphStore.ts float16Overflows), if any. */
function refuseFloat16Overflows(ckpt: Checkpoint, overflows: readonly Float16Overflow[]): void {
  if (!overflows.length) return
  const worst = [...overflows].sort((a, b) => b.maxAbs - a.maxAbs)
  const named = worst.slice(0, 3).map(o => `'${o.name}' (|w| up to ${o.maxAbs.toPrecision(3)})`).join(', ')
  fail('NUMERIC_FAILURE', `${overflows.length} weight tensor(s) of ${ckpt.dir} exceed float16's range (largest finite 65504): ${named}${overflows.length > 3 ? `, and ${overflows.length - 3} more` : ''}. A float16 graph would turn them into Inf and score NaN. Score it with --precision float32, or --precision bfloat16 on --device cuda (bfloat16 has float32's range).`)
}

/**
 * NUMERIC_FAILURE now when sessions on `settings.device` (in `settings.precision`, else the device's
 * default) would compute in float16 and a weight of `ckpt` exceeds float16's range. openGraphSession
 * refuses the same, but only once a method's variant is prepared: eval and a sweep's model check call this
 * before calibrating, which on a real model takes hours. (A removed expert's weight still counts.)
 */
export function refuseFloat16Range(ckpt: Checkpoint, settings: { device: Device; precision?: ComputePrecision; cacheDir?: string }): void {
  if (resolvePrecision(settings.device, settings.precision) === 'float16') refuseFloat16Overflows(ckpt, float16Overflows(ckpt, graphCacheRoot(settings)))
}

export function weightResidency(settings: { weights?: WeightResidency } = {}): WeightResidency {
  const chosen = settings.weights ?? (process.env.MOE_HARNESS_WEIGHTS || 'mapped')
  if (chosen !== 'mapped' && chosen !== 'memory') fail('CONFIG_INVALID', `MOE_HARNESS_WEIGHTS must be 'mapped' or 'memory', got '${chosen}'; unset it for the default (mapped).`)
  return chosen
}

/**
 * Where built graphs are cached: the given cacheDir, else the harness home when it was chosen
 * ($MOE_HARNESS_HOME) or already exists (a store or calibration cache made it). Otherwise nothing is
 * cached, so a read-only command such as `score` in a fresh folder writes nothing there.
 */
export function graphCacheRoot(settings: { cacheDir?: string } = {}): string | undefined {
  if (settings.cacheDir) return settings.cacheDir
  const home = harnessHome()
  return process.env.MOE_HARNESS_HOME || fs.existsSync(home) ? home : undefined
}

/**
 * The graph options a session on `device` in `precision` builds with. float32 is the option's
 * absence, so float32 graphs keep the cache keys they had before precision existed. Half precision on
 * WebGPU gets layer bodies (moeGraph.ts GraphOptions.layerBodies: measured bit-identical there); on the
 * CPU a float16 value crossing an If is rounded where one graph keeps it in float32, and CUDA has not
 * been measured, so both keep one main graph unless the caller says otherwise.
 */
export function sessionGraphOptions(graphOptions: Omit<GraphOptions, 'weightFiles'>, precision: ComputePrecision, device: Device): Omit<GraphOptions, 'weightFiles'> {
  const { precision: _, ...rest } = graphOptions
  if (precision === 'float32') return rest
  return { ...rest, precision, ...(device === 'webgpu' && rest.layerBodies === undefined ? { layerBodies: true } : {}) }
}

/**
 * The session of buildScoringGraph(ckpt, edits, options) in the precision of `options`, else of
 * `settings`, else the device's default; see WeightResidency. Errors: the build's, SESSION_FAILED /
 * DEVICE_UNAVAILABLE (ort.ts), INVALID_ARGUMENT (bfloat16 off cuda), and NUMERIC_FAILURE from run()
 * when a half-precision graph returns Inf/NaN.
 */
export async function openGraphSession(ckpt: Checkpoint, edits: VariantEdits, graphOptions: Omit<GraphOptions, 'weightFiles'>, settings: GraphSessionSettings): Promise<GraphSession> {
  const session = { device: settings.device, threads: settings.threads }
  const precision = resolvePrecision(settings.device, graphOptions.precision ?? settings.precision)
  refuseFloat16Range(ckpt, { ...settings, precision })
  const options = sessionGraphOptions(graphOptions, precision, settings.device)
  const opened = (s: Session, graphFromCache: boolean): GraphSession => ({
    ...s, graphFromCache, precision, run: precision === 'float32' || ckpt.allowNonfinite ? s.run : refuseNonfinite(s, precision),
  })
  if (weightResidency(settings) === 'memory') return opened(await createSession(buildScoringGraph(ckpt, edits, options), session), false)
  const open = async (graph: StoredGraph) => {
    try {
      // A cache entry also keeps onnxruntime's optimized form of its graph: the next session of the same
      // graph (another worker, a later sweep) opens that with optimizations off, about half the creation time.
      return opened(await createSession(graph.temporary ? graph : { ...graph, optimizedCacheDir: graph.dir }, session), graph.fromCache)
    } finally {
      releaseTemporary(graph)
    }
  }
  const graph = storedScoringGraph(ckpt, edits, options, graphCacheRoot(settings))
  try {
    return await open(graph)
  } catch (e) {
    // Builders replacing a damaged entry at once move entries aside for a moment (graphStore.ts
    // putInPlace), so the entry's derived weights can be missing just when this session reads them:
    // look the entry up again, once, rather than fail the worker's cell.
    if (graph.temporary || !entryFileMissing(e, graph.dir)) throw e
    return open(storedScoringGraph(ckpt, edits, options, graphCacheRoot(settings)))
  }
}

/** Whether session creation failed because a file of the cache entry `dir` was not there (onnxruntime's external-data check). */
export function entryFileMissing(e: unknown, dir: string): boolean {
  const message = e instanceof Error ? e.message : String(e)
  return /External data path does not exist/.test(message) && message.includes(dir)
}
