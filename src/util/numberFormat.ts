// How numbers are written for people (HTML and console tables) and how derived numbers are written to
// CSV. Stored per-task metrics are exported exactly; values the harness derives by summing (averages,
// recovery, throughput) carry float noise that no measurement has.

/** Significant digits a derived value keeps in CSV: far above any metric's precision, far below float noise (~1e-16 relative). */
export const DERIVED_DIGITS = 12

/**
 * `x` rounded to DERIVED_DIGITS significant digits (0.6000000000000001 → 0.6); null and non-finite
 * values unchanged. For derived values only (a mean of stored metrics), never for a stored metric.
 */
export function derivedNumber(x: number | null): number | null {
  return x === null || !Number.isFinite(x) ? x : Number(x.toPrecision(DERIVED_DIGITS))
}

/** Magnitude from which a table shows a number in scientific notation (a diverged perplexity of 1.6e15 printed 16 digits). */
export const SCIENTIFIC_FROM = 1e6

/**
 * `x` for a table: `digits` decimals (toFixed), or, when |x| >= SCIENTIFIC_FROM, 4 significant digits
 * in scientific notation without the '+' (1636649834897805.5 → '1.637e15').
 */
export function readableNumber(x: number, digits: number): string {
  if (Number.isFinite(x) && Math.abs(x) >= SCIENTIFIC_FROM) return x.toExponential(3).replace('e+', 'e')
  return x.toFixed(digits)
}
