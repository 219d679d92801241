// What the store's typed read queries (ResultsStore.storedModels(), .storedVariants(), ...)
// return: domain objects with parsed JSON and camelCase names, and the one place that turns a stored
// row into one. No SQL here (that stays in resultsStore.ts); no caller outside the store parses a
// *_json column.
import type { VariantAccounting } from '../variants/accounting.ts'

/** A method's parameter as the method file declares it (src/methods/defineMethod.ts `params`). */
export interface StoredParamSpec { type: string; default: unknown; description: string; values?: string[]; /** Declared bounds of a number / integer parameter. */ min?: number; max?: number }

/** A row of `method_info`: what the report needs to describe a method without loading its file. */
export interface StoredMethod {
  name: string
  family: string
  description: string
  params: Record<string, StoredParamSpec>
  /** Paper / official code links, as the method file gives them; null when it gives none. */
  reference: Record<string, string> | null
}

/** A row of `task_info`. */
export interface StoredTask { name: string; version: number; kind: string; description: string; metrics: string[]; primaryMetric: string }

/** A row of `models`: `config` is the checkpoint's config.json as parsed at sweep time. */
export interface StoredModel { id: string; name: string; path: string; architecture: string; config: Record<string, unknown>; totalParams: number }

/** How a variant was calibrated (null in StoredVariant: the method needs no calibration). */
export interface StoredCalibration { procedure: 'one-pass' | 'sequential'; tokens: number; seconds: number }

/** A variant whose transform failed: only what identifies it, and the error. */
export interface FailedVariant { status: 'failed'; variantId: string; method: string; paramsJson: string; ratio: number; error: string | null; /** When the store recorded it (ISO 8601, UTC; `variants.created_at`). */ createdAt: string; /** When a sweep last planned it (ReadyVariant.lastUsedAt). */ lastUsedAt: string }

/** A transformed variant, ready to be scored. */
export interface ReadyVariant {
  status: 'ready'
  variantId: string
  method: string
  /** The parameters as stored, and their JSON text (the sweep's canonical form). */
  params: Record<string, unknown>
  paramsJson: string
  ratio: number
  /** 0 when the sweep did not record it. */
  achievedRatio: number
  /** Content hash of the edits (identical edits share runs). */
  contentHash: string
  accounting: VariantAccounting
  warnings: string[]
  /** The method's free-form notes from its transform report ({} when it wrote none). */
  notes: Record<string, unknown>
  calibration: StoredCalibration | null
  /** When the store recorded it (ISO 8601, UTC; `variants.created_at`): a variant re-recorded by a later sweep has that sweep's time. */
  createdAt: string
  /**
   * When a sweep last planned it (ISO 8601, UTC; `variants.last_used_at`), also when every cell was
   * already stored (a reverted method edit brings an older variant back without recording anything
   * else); >= createdAt. Rows from before schema 6: their createdAt.
   */
  lastUsedAt: string
}

export type StoredVariant = FailedVariant | ReadyVariant

/** A complete run (one variant content × one task version). Units: seconds of wall time, tokens the graph processed. */
export interface StoredRun { runId: number; contentHash: string; task: string; taskVersion: number; /** The document subset (keys.ts runKey: 'all', 'limit:N', 'sample:N:seedS'). */ subset: string; /** sha256 of the task data file ('' before schema 5). */ dataSha256: string; docs: number; seconds: number; tokensProcessed: number
  /**
   * Of `seconds`, the wall-clock seconds spent building the variant's onnxruntime session, and starting
   * the pool's workers for the sweep's first cell (0 when the workers already had the session: a later
   * task of the variant, or a variant sharing its session); null for runs stored before schema 7,
   * which did not record it.
   */
  sessionSeconds: number | null
  /** keys.ts scoringKey (scoring version, max length, device, onnxruntime version), and the readable device and onnxruntime version it was made from. */
  scoringKey: string; device: string; ortVersion: string }

/** One stored metric of a run; `higherIsBetter` is the flag the evaluation wrote (src/tasks/metrics.ts). */
export interface StoredMetric { value: number; stderr: number | null; higherIsBetter: boolean }

/** A rolling-task document: its log-likelihood and the words / bytes it covers (lm-eval's weights). */
export interface PerplexitySample { ll: number; words: number; bytes: number }

/** The columns of `samples` that per-document correctness is derived from. */
export interface SampleOutcomeRow { gold_json: string; greedy_json: string; preds_json: string }

/**
 * Whether one stored document is correct under accuracy metric `metric` of a task of kind `kind`
 * (1 or 0), derived from the stored predictions; null when `metric` has no per-document correctness
 * (perplexities). The samples table stores predictions, not correctness, so this is the ONE place
 * that derives it; the rule is the one src/tasks/evaluate.ts computeMetrics() averages (lm-eval's
 * process_results), and tests/report/report.test.ts checks that the mean of this equals the stored
 * metric value of every accuracy run:
 * - `acc` of a `loglikelihood` task: the continuation is the greedy one (greedy[0]);
 * - `exact_match`: some gold choice is the greedy continuation;
 * - `acc`, `acc_norm`, `acc_bytes`, `acc_mutual_info`: the stored prediction is (one of) the gold(s).
 */
export function sampleCorrectness(kind: string, metric: string, row: SampleOutcomeRow): 0 | 1 | null {
  const gold = JSON.parse(row.gold_json) as number | number[] | null
  const golds = gold === null ? [] : Array.isArray(gold) ? gold : [gold]
  if (metric === 'exact_match') {
    const greedy = JSON.parse(row.greedy_json) as boolean[]
    return golds.some(g => greedy[g]) ? 1 : 0
  }
  if (metric === 'acc' && kind === 'loglikelihood') return (JSON.parse(row.greedy_json) as boolean[])[0] ? 1 : 0
  if (metric === 'acc' || metric === 'acc_norm' || metric === 'acc_bytes' || metric === 'acc_mutual_info') {
    const pred = (JSON.parse(row.preds_json) as Record<string, number>)[metric]
    return golds.includes(pred) ? 1 : 0
  }
  return null
}

/**
 * A stored `calibration_json` as a StoredCalibration: rows written before calibration procedures
 * existed have no `procedure` and were one-pass; missing counts read as 0.
 */
export function parseCalibration(json: string | null): StoredCalibration | null {
  const c = json ? (JSON.parse(json) as { procedure?: string; tokens?: number; seconds?: number } | null) : null
  if (!c) return null
  return { procedure: c.procedure === 'sequential' ? 'sequential' : 'one-pass', tokens: Number(c.tokens ?? 0), seconds: Number(c.seconds ?? 0) }
}
