import { fail } from '../errors.ts'

export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]
    prev[0] = i
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1))
      diag = up
    }
  }
  return prev[b.length]
}

/**
 * The valid names closest to `name`: small edit distance, or one contains the other; failing those,
 * names that begin like it (a long camelCase parameter typed by its first word, spelt another way:
 * `renormalise` for renormalizeRouterWeights had no suggestion).
 */
export function closest(name: string, valid: readonly string[], max = 3): string[] {
  const lower = name.toLowerCase()
  const rank = (scored: { v: string; score: number }[], limit: number) => scored
    .filter(x => x.score <= limit)
    .sort((a, b) => a.score - b.score || a.v.localeCompare(b.v))
    .slice(0, max)
    .map(x => x.v)
  const near = rank(valid.map(v => {
    const vl = v.toLowerCase()
    const d = editDistance(lower, vl)
    const contains = vl.includes(lower) || lower.includes(vl)
    return { v, score: contains ? Math.min(d, 1.5) : d }
  }), Math.max(2, Math.floor(name.length / 3)))
  if (near.length || lower.length < 4) return near
  return rank(valid.filter(v => v.length > lower.length).map(v => ({ v, score: editDistance(lower, v.toLowerCase().slice(0, lower.length)) })),
    Math.max(1, Math.floor(lower.length / 5)))
}

/** Throws UNKNOWN_NAME with "Did you mean" suggestions and the list of valid names. */
export function unknownName(kind: string, name: string, valid: readonly string[]): never {
  const near = closest(name, valid)
  const hint = near.length ? ` Did you mean: ${near.join(', ')}?` : ''
  fail('UNKNOWN_NAME', `Unknown ${kind} '${name}'.${hint} Available: ${[...valid].sort().join(', ') || '(none)'}.`)
}
