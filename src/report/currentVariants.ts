// Which stored variant is the current one of each leaderboard row, and so which failures are current:
// the one rule the report (leaderboardData.ts summarize) and the export (cli/commands/store.ts) apply,
// so the model page's "Failed variants and cells" and the export's 'failed' rows list the same failures.
import { isBaselineContent } from '../identity/keys.ts'
import type { StoredParamSpec, StoredVariant } from '../store/reads.ts'
import type { ResultsStore } from '../store/resultsStore.ts'

/** `params` less the ratio and every value equal to the method's current default, as `k=v` pairs by name (what names a series). */
export function nonDefaultParams(params: Record<string, unknown>, defaults: Record<string, StoredParamSpec>): [string, unknown][] {
  return Object.entries(params).filter(([k, x]) => k !== 'ratio' && defaults[k]?.default !== x)
}

/**
 * Which row a variant is a version of: its method, ratio and the parameters that differ from the
 * method's current defaults (so a parameter a plugin edit added, at its default, does not split a row),
 * order-independent.
 */
export function rowIdentity(method: string, ratio: number, params: Record<string, unknown>, defaults: Record<string, StoredParamSpec>): string {
  return JSON.stringify([method, ratio, nonDefaultParams(params, defaults).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))])
}

/** A variant's parameters: a failed variant has only its stored JSON text ({} when it does not parse). */
export function paramsOf(v: StoredVariant): Record<string, unknown> {
  if (v.status === 'ready') return v.params
  try {
    return JSON.parse(v.paramsJson) as Record<string, unknown>
  } catch {
    return {}
  }
}

/** A prepared variant with no edits at ratio 0: the unpruned model, whichever method's sweep made it. */
export function isBaselineVariant(v: StoredVariant): boolean {
  return v.status === 'ready' && isBaselineContent(v.contentHash) && v.ratio === 0
}

/**
 * Whether `a` is the later of two variants of one row: the one a sweep used last stands (what the
 * method's code produces now, also after an edit is reverted); ties: the later made, a ready one,
 * then the larger id, so renders are deterministic.
 */
export function newer(a: StoredVariant, b: StoredVariant): boolean {
  return a.lastUsedAt !== b.lastUsedAt ? a.lastUsedAt > b.lastUsedAt
    : a.createdAt !== b.createdAt ? a.createdAt > b.createdAt : a.status !== b.status ? a.status === 'ready' : a.variantId > b.variantId
}

export interface VariantSelection {
  identityOf(v: StoredVariant): string
  /** By row identity: the variant a sweep used last (ready or failed). */
  current: Map<string, StoredVariant>
  /** The row's current variant, or a baseline variant (the unpruned row, which every ratio-0 sweep of any method reuses). */
  isCurrent(v: StoredVariant): boolean
}

/**
 * The current variant of each row of one model's `variants`. A baseline variant competes for its own
 * row too: a method at ratio 0 that failed once (a crash) and was prepared by a later sweep produces
 * the unpruned model, and that later success supersedes the failure (it was listed as failed forever).
 */
export function selectVariants(variants: readonly StoredVariant[], defaultsOf: (method: string) => Record<string, StoredParamSpec>): VariantSelection {
  const identityOf = (v: StoredVariant) => rowIdentity(v.method, v.ratio, paramsOf(v), defaultsOf(v.method))
  const current = new Map<string, StoredVariant>()
  for (const v of variants) {
    const c = current.get(identityOf(v))
    if (!c || newer(v, c)) current.set(identityOf(v), v)
  }
  return { identityOf, current, isCurrent: v => isBaselineVariant(v) || current.get(identityOf(v)) === v }
}

/**
 * A current failure of a model: a failed variant that is its row's current one (task null), or a failed
 * cell (task) of a current variant with no complete run of that variant content and task
 * (ResultsStore.failedRuns). A failed cell of the unpruned model is listed once, under its first
 * baseline variant (`baseline` true). Failures superseded by a later success are not current.
 */
export interface CurrentFailure { variant: StoredVariant; task: string | null; error: string; baseline: boolean }

/** One model's current failures (see CurrentFailure): failed variants in `variants` order, then failed cells in `failedRuns` order. */
export function currentFailures(
  variants: readonly StoredVariant[], failedRuns: readonly { contentHash: string; task: string; error: string }[], selection: VariantSelection,
): CurrentFailure[] {
  const out: CurrentFailure[] = []
  for (const v of variants) if (v.status === 'failed' && selection.isCurrent(v)) out.push({ variant: v, task: null, error: v.error ?? 'failed', baseline: false })
  for (const f of failedRuns) {
    const owners = variants.filter(v => v.status === 'ready' && v.contentHash === f.contentHash && selection.isCurrent(v))
    const baselineOwner = owners.find(isBaselineVariant)
    for (const v of baselineOwner ? [baselineOwner] : owners) out.push({ variant: v, task: f.task, error: f.error, baseline: v === baselineOwner })
  }
  return out
}

/** The store reads currentFailuresOf needs. */
export type FailureSource = Pick<ResultsStore, 'storedModels' | 'storedMethods' | 'storedVariants' | 'failedRuns'>

/** Every model's current failures, as `${variantId}\t${task ?? ''}` keys (a failed variant, a failed cell): what the export keeps of its 'failed' rows. */
export function currentFailureKeys(store: FailureSource): Set<string> {
  const defaults = new Map(store.storedMethods().map(m => [m.name, m.params]))
  const keys = new Set<string>()
  for (const m of store.storedModels()) {
    const variants = store.storedVariants(m.id)
    const selection = selectVariants(variants, method => defaults.get(method) ?? {})
    for (const f of currentFailures(variants, store.failedRuns(m.id), selection)) keys.add(failureKey(f.variant.variantId, f.task))
  }
  return keys
}

/** The key of a failure in currentFailureKeys. */
export function failureKey(variantId: string, task: string | null): string {
  return `${variantId}\t${task ?? ''}`
}
