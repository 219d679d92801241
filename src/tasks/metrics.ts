// Aggregations and standard errors as lm-eval computes them (lm_eval/api/metrics.py).
import { mulberry32 } from '../util/rng.ts'

export interface MetricValue {
  value: number
  /** null where lm-eval reports N/A (weighted perplexities). */
  stderr: number | null
  higherIsBetter: boolean
}

/**
 * numpy.argmax of a 1-d array, which lm-eval takes for acc, acc_norm, acc_bytes and acc_mutual_info
 * (Task.process_results): exact ties go to the FIRST maximal index, and a NaN counts as the maximum
 * (the first NaN wins; NaN arises as 0/0 in acc_norm for an empty choice with ll 0). -Infinity and
 * +Infinity compare as numbers. Errors: none; an empty list gives 0 (numpy would raise).
 */
export function argmax(values: readonly number[]): number {
  let best = 0
  for (let i = 0; i < values.length; i++) {
    if (Number.isNaN(values[i])) return i
    if (values[i] > values[best]) best = i
  }
  return best
}

export function mean(xs: readonly number[]): number {
  let s = 0
  for (const x of xs) s += x
  return s / xs.length
}

/** Sample standard deviation (Bessel) / sqrt(n): lm-eval's mean_stderr. */
export function meanStderr(xs: readonly number[]): number {
  const n = xs.length
  if (n < 2) return NaN
  const m = mean(xs)
  let ss = 0
  for (const x of xs) ss += (x - m) ** 2
  return Math.sqrt(ss / (n - 1)) / Math.sqrt(n)
}

/** Seeded bootstrap standard deviation of a statistic (deterministic on every machine). */
export function bootstrapStderr(xs: readonly number[], stat: (sample: number[]) => number, iterations = 1000, seed = 1234): number {
  const rng = mulberry32(seed)
  const n = xs.length
  const values: number[] = []
  const sample = new Array<number>(n)
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < n; i++) sample[i] = xs[Math.floor(rng() * n)]
    values.push(stat(sample))
  }
  return Math.sqrt(values.reduce((s, v) => s + (v - mean(values)) ** 2, 0) / (iterations - 1))
}

/** Accuracy and its stderr; no stderr (null, "N/A") for fewer than 2 documents, as lm-eval's `len(items) > 1` check (the table showed "± NaN"). */
export function accuracyMetric(outcomes: readonly number[]): MetricValue {
  return { value: mean(outcomes), stderr: outcomes.length > 1 ? meanStderr(outcomes) : null, higherIsBetter: true }
}

/** lm-eval's `perplexity` aggregation: exp(-mean over documents of log-likelihood). */
export function documentPerplexity(lls: readonly number[]): MetricValue {
  const stat = (xs: readonly number[]) => Math.exp(-mean(xs))
  return { value: stat(lls), stderr: lls.length > 1 ? bootstrapStderr(lls, stat) : null, higherIsBetter: false }
}

/** word/byte perplexity and bits per byte: totals over all documents, no stderr (as lm-eval). */
export function weightedPerplexity(lls: readonly number[], weights: readonly number[]): { perplexity: number; bitsPer: number } {
  const ll = lls.reduce((a, b) => a + b, 0)
  const w = weights.reduce((a, b) => a + b, 0)
  return { perplexity: Math.exp(-ll / w), bitsPer: -ll / w / Math.LN2 }
}
