// Every default a user can override, in one frozen place: the config schema (src/config/defineConfig.ts),
// the CLI options (src/cli/**) and calibration (src/calibration/source.ts) read them from here, so a
// command and a config can never disagree about what "not given" means.
import os from 'node:os'
import path from 'node:path'

/**
 * The harness's own folder: calibration statistics and built graphs are cached under it ($MOE_HARNESS_HOME,
 * else ./.harness). An empty value counts as unset, as for the other MOE_HARNESS_* variables: it had
 * resolved to the current folder, which then received graphs/, calibration/ and variants/.
 */
export function harnessHome(): string {
  return path.resolve(process.env.MOE_HARNESS_HOME || '.harness')
}

export const DEFAULTS = Object.freeze({
  /** Seed of a stratified `sample` subset (part of the subset key, so of every run key). */
  sampleSeed: 1234,
  calibration: Object.freeze({
    /** The held-out validation text of the built-in corpora. */
    source: 'builtin',
    /** jsonl/parquet field holding the text. */
    field: 'text',
    /** Sequences × tokens: the papers' 128 × 2048 (NAEE, Wanda), the length cut to the model's context. */
    sequences: 128,
    maxLength: 2048,
    seed: 42,
  }),
  /**
   * Window of the pruning papers' token perplexity (a task's `tokenWindow` overrides it; never longer
   * than the model's context): WikiText-2 "PPL at 2048" (evaluation-protocol.md §4.2).
   */
  tokenPerplexityWindow: 2048,
  /** Padded tokens per batch; scores do not depend on it (src/engine/packing.ts). */
  batchTokens: 2048,
  /** Scoring workers of a sweep. */
  workers: 1,
})

/** Tokens per calibration sequence when not given: min(2048, the model's context). */
export function defaultCalibrationLength(maxPositions: number): number {
  return Math.min(DEFAULTS.calibration.maxLength, maxPositions)
}

/**
 * Intra-op threads per worker when not given: the cores shared evenly by the workers (at least 1), so
 * every command uses all cores once (eval/score/transform run one session: all cores).
 */
export function defaultThreads(workers = 1, cores = os.availableParallelism()): number {
  return Math.max(1, Math.floor(cores / Math.max(1, workers)))
}
