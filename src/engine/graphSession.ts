// Opens an onnxruntime session on the scoring graph of (checkpoint, edits, options): the one place
// the scorer, the pool worker and calibration get sessions from, so all of them map weights the same way.
import fs from 'node:fs'
import { harnessHome } from '../defaults.ts'
import { fail } from '../errors.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { buildScoringGraph, type GraphOptions } from '../onnx/moeGraph.ts'
import { releaseTemporary, storedScoringGraph } from '../onnx/graphStore.ts'
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
}

export interface GraphSession extends Session {
  /** Whether the graph came from the on-disk cache (no graph build). */
  readonly graphFromCache: boolean
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

/** The session of buildScoringGraph(ckpt, edits, options); see WeightResidency. Errors: the build's, and SESSION_FAILED / DEVICE_UNAVAILABLE (ort.ts). */
export async function openGraphSession(ckpt: Checkpoint, edits: VariantEdits, options: Omit<GraphOptions, 'weightFiles'>, settings: GraphSessionSettings): Promise<GraphSession> {
  const session = { device: settings.device, threads: settings.threads }
  if (weightResidency(settings) === 'memory') return { ...(await createSession(buildScoringGraph(ckpt, edits, options), session)), graphFromCache: false }
  const graph = storedScoringGraph(ckpt, edits, options, graphCacheRoot(settings))
  try {
    return { ...(await createSession(graph, session)), graphFromCache: graph.fromCache }
  } finally {
    releaseTemporary(graph)
  }
}
