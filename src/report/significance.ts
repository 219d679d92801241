// Paired comparisons on identical documents (evaluation-protocol.md §5): McNemar's exact test for
// per-document correctness, and a seeded paired bootstrap for perplexity.
import { mulberry32 } from '../util/rng.ts'

function logChoose(n: number, k: number): number {
  let s = 0
  for (let i = 1; i <= k; i++) s += Math.log(n - k + i) - Math.log(i)
  return s
}

/** Two-sided exact McNemar p-value from the discordant counts b (A right, B wrong) and c (A wrong, B right). */
export function mcnemarExact(b: number, c: number): number {
  const n = b + c
  if (n === 0) return 1
  const k = Math.min(b, c)
  let tail = 0
  for (let i = 0; i <= k; i++) tail += Math.exp(logChoose(n, i) - n * Math.LN2)
  return Math.min(1, 2 * tail)
}

export interface PairedResult {
  p: number
  test: string
  detail: string
  /** Which side the observed difference favours (higher accuracy, lower perplexity): the first argument 'a', the second 'b', or 'neither' (a tie). */
  favours: 'a' | 'b' | 'neither'
}

const favouring = (aBetter: boolean, bBetter: boolean): PairedResult['favours'] => (aBetter ? 'a' : bBetter ? 'b' : 'neither')

export function compareCorrectness(a: readonly number[], b: readonly number[]): PairedResult {
  let onlyA = 0, onlyB = 0
  for (let i = 0; i < a.length; i++) {
    if (a[i] && !b[i]) onlyA++
    else if (!a[i] && b[i]) onlyB++
  }
  return { p: mcnemarExact(onlyA, onlyB), test: 'McNemar (exact)', detail: `b=${onlyA}, c=${onlyB}, n=${a.length}`, favours: favouring(onlyA > onlyB, onlyB > onlyA) }
}

/**
 * Paired bootstrap of the difference in weighted perplexity exp(-Σll/Σw) over the same documents;
 * p = twice the share of resamples on the other side of zero (seeded, 1000 resamples).
 */
export function comparePerplexity(llA: readonly number[], llB: readonly number[], weights: readonly number[], iterations = 1000): PairedResult {
  const n = llA.length
  const ppl = (ll: readonly number[], idx: Int32Array) => {
    let s = 0, w = 0
    for (const i of idx) { s += ll[i]; w += weights[i] }
    return Math.exp(-s / w)
  }
  const all = Int32Array.from({ length: n }, (_, i) => i)
  const observed = ppl(llA, all) - ppl(llB, all)
  const rng = mulberry32(9001)
  let other = 0
  const idx = new Int32Array(n)
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < n; i++) idx[i] = Math.floor(rng() * n)
    const d = ppl(llA, idx) - ppl(llB, idx)
    if (observed >= 0 ? d <= 0 : d >= 0) other++
  }
  return { p: Math.min(1, (2 * (other + 1)) / (iterations + 1)), test: 'paired bootstrap', detail: `Δ=${observed.toFixed(4)}, ${iterations} resamples`, favours: favouring(observed < 0, observed > 0) }
}
