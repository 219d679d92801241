// Reads the results store (only, through its typed queries) into the plain, schema-versioned data every
// page is rendered from (renderSite.ts buildPages turns it into pages).
import { isBaselineContent } from '../identity/keys.ts'
import type { StoredCalibration, StoredParamSpec } from '../store/reads.ts'
import type { ResultsStore } from '../store/resultsStore.ts'
import type { VariantAccounting } from '../variants/accounting.ts'
import { compareCorrectness, comparePerplexity, type PairedResult } from './significance.ts'

export const LEADERBOARD_VERSION = 1

export interface TaskInfo {
  name: string
  slug: string
  version: number
  kind: string
  description: string
  metric: string
  higherIsBetter: boolean
  /** Accuracy-type tasks enter the average; perplexity tasks are shown beside it. */
  isAccuracy: boolean
}

export interface Cell {
  value: number
  stderr: number | null
  docs: number
  vsBaseline?: PairedResult
  vsBest?: PairedResult & { best: string }
}

export interface Row {
  variantId: string
  slug: string
  method: string
  family: string
  params: Record<string, unknown>
  paramsLabel: string
  ratio: number
  achievedRatio: number
  isBaseline: boolean
  cells: Record<string, Cell>
  average: number | null
  recovery: number | null
  accounting: VariantAccounting
  tokensPerSecond: number | null
  warnings: string[]
  notes: Record<string, unknown>
  seriesLabel: string
  /** How the variant was calibrated (null: the method needs no calibration). Rows stored before procedures existed were one-pass. */
  calibration: StoredCalibration | null
}

export interface MethodInfo { name: string; slug: string; family: string; description: string; params: Record<string, StoredParamSpec>; reference: Record<string, string> | null }

export interface ModelData {
  id: string
  name: string
  slug: string
  architecture: string
  config: Record<string, unknown>
  tasks: TaskInfo[]
  rows: Row[]
  baseline: Row | null
  routingLoad: { layer: number; load: number[] }[] | null
  /** Failed variants (no task) and failed cells (a prepared variant whose task failed to score). */
  failures: { method: string; params: string; task: string | null; error: string }[]
}

export interface LeaderboardData {
  version: number
  title: string
  models: ModelData[]
  methods: MethodInfo[]
  generatedFrom: { sweeps: number; lastSweep: string | null }
}

export function slugify(text: string): string {
  const s = text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')
  return s || 'x'
}

/** The store's typed reads the report uses (ResultsStore implements them; src/store/reads.ts has the shapes). */
export type ReportSource = Pick<ResultsStore,
  'storedMethods' | 'storedTasks' | 'storedModels' | 'storedVariants' | 'completeRuns' | 'failedRuns' | 'runMetric' | 'metricHigherIsBetter'
  | 'sampleCorrectness' | 'perplexitySamples' | 'routingLoad' | 'sweepSummary'>

/**
 * Reads everything the site shows from the store's typed queries (no SQL here): per model, the
 * tasks of its complete runs, one row per ready variant (the unpruned model once), failed variants,
 * and paired significance (evaluation-protocol.md §5) against the unpruned model and against the
 * best row at the same ratio. Higher-is-better is the flag the evaluation stored with the metric;
 * a task whose primary metric no complete run stored (so it has no cells) counts as higher-is-better.
 */
export function summarize(store: ReportSource, title: string): LeaderboardData {
  const methods: MethodInfo[] = store.storedMethods().map(m => ({
    name: m.name, slug: slugify(m.name), family: m.family, description: m.description, params: m.params, reference: m.reference,
  }))
  const familyOf = new Map(methods.map(m => [m.name, m.family]))
  const taskMeta = new Map(store.storedTasks().map(t => [`${t.name}@${t.version}`, t]))
  const models: ModelData[] = []
  const usedSlugs = new Set<string>()
  const unique = (base: string) => {
    let s = base, i = 2
    while (usedSlugs.has(s)) s = `${base}-${i++}`
    usedSlugs.add(s)
    return s
  }
  for (const m of store.storedModels()) {
    const runs = store.completeRuns(m.id)
    const taskKeys = [...new Set(runs.map(r => `${r.task}@${r.taskVersion}`))].sort()
    const tasks: TaskInfo[] = taskKeys.map(k => {
      const t = taskMeta.get(k)
      const [name, version] = k.split('@')
      const metric = t?.primaryMetric ?? 'acc'
      const higherIsBetter = store.metricHigherIsBetter(name, Number(version), metric) ?? true
      return { name, slug: slugify(name), version: Number(version), kind: t?.kind ?? 'unknown', description: t?.description ?? '', metric, higherIsBetter, isAccuracy: higherIsBetter }
    })
    const variants = store.storedVariants(m.id)
    // The latest run wins: a cell re-scored under a new key (other task data, scoring version) supersedes older rows.
    const runOf = (hash: string, task: TaskInfo) => runs.findLast(r => r.contentHash === hash && r.task === task.name && r.taskVersion === task.version)
    const correctnessCache = new Map<number, number[] | null>()
    const correctness = (runId: number, task: TaskInfo): number[] | null => {
      if (!correctnessCache.has(runId)) correctnessCache.set(runId, store.sampleCorrectness(runId, task.kind, task.metric))
      return correctnessCache.get(runId) ?? null
    }
    const failures: ModelData['failures'] = []
    const rows: Row[] = []
    const hashOf = new Map<string, string>()
    let baselineSeen = false
    for (const v of variants) {
      if (v.status !== 'ready') {
        failures.push({ method: v.method, params: v.paramsJson, task: null, error: v.error ?? 'failed' })
        continue
      }
      const isBaseline = isBaselineContent(v.contentHash) && v.ratio === 0
      if (isBaseline && baselineSeen) continue
      hashOf.set(v.variantId, v.contentHash)
      // Only what differs from the method's defaults names a series.
      const defaults = methods.find(x => x.name === v.method)?.params ?? {}
      const paramsLabel = Object.entries(v.params).filter(([k, x]) => k !== 'ratio' && defaults[k]?.default !== x).map(([k, x]) => `${k}=${x}`).join(' ')
      const cells: Record<string, Cell> = {}
      let tokens = 0, seconds = 0
      for (const t of tasks) {
        const run = runOf(v.contentHash, t)
        if (!run) continue
        const metric = store.runMetric(run.runId, t.metric)
        if (!metric) continue
        cells[t.name] = { value: metric.value, stderr: metric.stderr, docs: run.docs }
        tokens += run.tokensProcessed
        seconds += run.seconds
      }
      if (isBaseline) baselineSeen = true
      const accuracyTasks = tasks.filter(t => t.isAccuracy && cells[t.name])
      const average = accuracyTasks.length ? accuracyTasks.reduce((s, t) => s + cells[t.name].value, 0) / accuracyTasks.length : null
      rows.push({
        variantId: v.variantId, slug: '', method: isBaseline ? 'unpruned' : v.method, family: isBaseline ? 'baseline' : familyOf.get(v.method) ?? 'unknown',
        params: v.params, paramsLabel: isBaseline ? '' : paramsLabel, ratio: v.ratio, achievedRatio: v.achievedRatio, isBaseline, cells, average, recovery: null,
        accounting: v.accounting, tokensPerSecond: seconds > 0 ? tokens / seconds : null,
        warnings: v.warnings, notes: v.notes,
        seriesLabel: isBaseline ? 'unpruned' : paramsLabel ? `${v.method} (${paramsLabel})` : v.method,
        calibration: v.calibration,
      })
    }
    rows.sort((a, b) => Number(b.isBaseline) - Number(a.isBaseline) || a.method.localeCompare(b.method) || a.paramsLabel.localeCompare(b.paramsLabel) || a.ratio - b.ratio)
    const baseline = rows.find(r => r.isBaseline) ?? null
    for (const r of rows) {
      r.slug = unique(slugify(`${m.name}-${r.isBaseline ? 'unpruned' : `${r.method}-${r.paramsLabel}-${r.ratio}`}`))
      if (baseline && baseline.average && r.average !== null) r.recovery = (100 * r.average) / baseline.average
    }
    // Paired significance against the unpruned model and the best row at the same ratio.
    for (const t of tasks) {
      const compare = (a: Row, b: Row): PairedResult | undefined => {
        const ra = runOf(hashOf.get(a.variantId) ?? '', t), rb = runOf(hashOf.get(b.variantId) ?? '', t)
        if (!ra || !rb) return undefined
        if (t.isAccuracy) {
          const ca = correctness(ra.runId, t), cb = correctness(rb.runId, t)
          return ca && cb ? compareCorrectness(ca, cb) : undefined
        }
        const sa = store.perplexitySamples(ra.runId), sb = store.perplexitySamples(rb.runId)
        if (!sa || !sb) return undefined
        // Word perplexity is weighted by words, byte perplexity and bits per byte by bytes (lm-eval).
        return comparePerplexity(sa.map(s => s.ll), sb.map(s => s.ll), sa.map(s => (t.metric === 'word_perplexity' ? s.words : s.bytes)))
      }
      for (const r of rows) {
        const cell = r.cells[t.name]
        if (!cell) continue
        if (baseline && r !== baseline && baseline.cells[t.name]) cell.vsBaseline = compare(r, baseline)
        const peers = rows.filter(x => !x.isBaseline && x.ratio === r.ratio && x.cells[t.name])
        if (peers.length > 1 && !r.isBaseline) {
          const best = peers.reduce((a, b) => ((t.higherIsBetter ? b.cells[t.name].value > a.cells[t.name].value : b.cells[t.name].value < a.cells[t.name].value) ? b : a))
          if (best !== r) {
            const res = compare(r, best)
            if (res) cell.vsBest = { ...res, best: best.seriesLabel }
          }
        }
      }
    }
    // Failed cells: a prepared variant whose task did not score (the unpruned model listed once).
    for (const f of store.failedRuns(m.id)) {
      const owners = variants.filter(v => v.status === 'ready' && v.contentHash === f.contentHash)
      const baselineOwner = owners.find(v => v.status === 'ready' && isBaselineContent(v.contentHash) && v.ratio === 0)
      for (const v of baselineOwner ? [baselineOwner] : owners) {
        failures.push({ method: v === baselineOwner ? 'unpruned' : v.method, params: v === baselineOwner ? '' : v.paramsJson, task: f.task, error: f.error })
      }
    }
    models.push({
      id: m.id, name: m.name, slug: unique(slugify(m.name)), architecture: m.architecture, config: m.config, tasks, rows, baseline,
      routingLoad: store.routingLoad(m.id), failures,
    })
  }
  return { version: LEADERBOARD_VERSION, title, models, methods, generatedFrom: store.sweepSummary() }
}
