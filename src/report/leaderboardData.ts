// Reads the results store (only, through its typed queries) into the plain, schema-versioned data every
// page is rendered from (renderSite.ts buildPages turns it into pages).
import { defaultPrecision } from '../engine/graphSession.ts'
import { DEVICES, type Device } from '../ort/ort.ts'
import type { StoredCalibration, StoredParamSpec, StoredRun, StoredVariant } from '../store/reads.ts'
import type { ResultsStore } from '../store/resultsStore.ts'
import type { VariantAccounting } from '../variants/accounting.ts'
import { currentFailures, isBaselineVariant, newer, nonDefaultParams, paramsOf, rowIdentity, selectVariants } from './currentVariants.ts'
import { compareCorrectness, comparePerplexity, type PairedResult } from './significance.ts'

/**
 * 2: tasks are columns keyed by TaskInfo.key (task, version, document subset, data file, device; TaskInfo.scoring, only on columns split by device, is an addition within 2); rows say which tasks their average and recovery cover.
 * Additions within 2: one row per (method, parameters, ratio), the newest variant; older ones in ModelData.superseded (Row.createdAt, Row.superseded, Row.olderComplete).
 * Then "newest" became the variant a sweep used last (Row.lastUsedAt, SupersededVariant.lastUsedAt; supersededAt is the current variant's lastUsedAt).
 * Then Row.tokensPerSecond became a scoring throughput: the seconds spent opening sessions are left out (runs stored since schema 7).
 */
export const LEADERBOARD_VERSION = 2

/**
 * How the cells of a column were scored, when the store holds its task scored on several devices
 * (TaskInfo.scoring). The device decides the graph's precision (the sweep has no precision option:
 * engine/graphSession.ts defaultPrecision), so a CPU and a GPU score of one task are different
 * measurements. Another onnxruntime or scoring version on the same device is not: its latest run stands.
 */
export interface ScoringInfo {
  /** keys.ts scoringKey (scoring version, max length, device, onnxruntime version) of the column's latest run. */
  key: string
  /** The execution provider the runs used ('cpu', 'cuda', 'webgpu'). */
  device: string
  /** The compute dtype of the graph on that device ('float32' on the CPU, 'float16' on a GPU); '' for a device this harness does not know. */
  precision: string
  /** The onnxruntime version of the column's latest run (older cells of the column may predate it). */
  ortVersion: string
  /** What tells this column apart from the task's others: its device, `cpu` / `webgpu`. */
  label: string
}

/**
 * One column of a model's leaderboard: one task version scored on one document subset of one data
 * file on one device. Scores of two versions of a task, of two sets of documents, or from two devices
 * (float32 vs half precision) are different measurements, so they are never one column, never paired,
 * never averaged together (lm-eval versions tasks for this).
 */
export interface TaskInfo {
  /**
   * The column's identity in Row.cells and averageTasks: the task's name, or, when the store holds
   * several versions, subsets, data files or devices of it, `name v2` / `name [sample:20:seed1234]` /
   * `name [data 1a2b3c4d]` (the data file's sha256; `unknown` for runs stored before schema 5) /
   * `name [webgpu]` (ScoringInfo.label).
   */
  key: string
  name: string
  /** slugify(key): the task page. */
  slug: string
  version: number
  /** The document subset the cells were scored on (keys.ts runKey: 'all', 'limit:N', 'sample:N:seedS'). */
  subset: string
  /** sha256 of the task data file the cells were scored on ('' for runs stored before schema 5). */
  dataSha256: string
  kind: string
  description: string
  metric: string
  higherIsBetter: boolean
  /** Accuracy-type tasks enter the average; perplexity tasks are shown beside it. */
  isAccuracy: boolean
  /** Present only when the store holds this task scored on several devices (the column is split by device). */
  scoring?: ScoringInfo
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
  /** By TaskInfo.key. */
  cells: Record<string, Cell>
  /**
   * Mean primary metric over all of the model's accuracy tasks (ModelData.averageTasks); null when
   * the row lacks one of them (missingTasks): an average over fewer tasks would not compare with the
   * others (HELM, the Open LLM Leaderboard: only rows with every task are averaged and ranked).
   */
  average: number | null
  /** Keys of the model's accuracy tasks this row has no score for (empty: the row is complete). */
  missingTasks: string[]
  /**
   * Percent of the unpruned model's score kept: mean(this row) / mean(unpruned) over recoveryTasks,
   * the accuracy tasks both scored (all of averageTasks for complete rows); null when they share none
   * or there is no unpruned row.
   */
  recovery: number | null
  /** Keys of the tasks `recovery` is computed over; fewer than averageTasks: a partial recovery. */
  recoveryTasks: string[]
  accounting: VariantAccounting
  /**
   * Scoring throughput: tokens the graph processed over the seconds spent scoring them, summed over the
   * row's runs; a run's seconds less the time its workers spent opening the variant's session, and
   * starting for the sweep's first cell (StoredRun.sessionSeconds), so the first variant to build a
   * session does not look slower than the variants that reuse it. Runs stored before schema 7 count their whole wall time. Null with no run.
   */
  tokensPerSecond: number | null
  warnings: string[]
  notes: Record<string, unknown>
  seriesLabel: string
  /** How the variant was calibrated (null: the method needs no calibration). Rows stored before procedures existed were one-pass. */
  calibration: StoredCalibration | null
  /** When the store recorded the variant (ISO 8601, UTC). */
  createdAt: string
  /** When a sweep last planned the variant (ISO 8601, UTC; src/store/reads.ts ReadyVariant.lastUsedAt): why this variant is the row. */
  lastUsedAt: string
  /** How many older variants of this row's method, parameters and ratio it supersedes (ModelData.superseded). */
  superseded: number
  /**
   * When this row is incomplete and an older variant of it (superseded) scored every accuracy task:
   * that one, so the page can say a complete result of the earlier code exists; null otherwise.
   */
  olderComplete: { variantId: string; createdAt: string; lastUsedAt: string; average: number } | null
}

/**
 * An older variant of a row's (method, parameters other than their current defaults, ratio): its
 * variant id covers the method's code (its file and the project files it imports), its calibration
 * and procedure, so an edited plugin or another calibration makes a new variant of the same row.
 * The one a sweep used last (`variants.last_used_at`, then `created_at`) is the row: it is what the code
 * now produces, also after an edit is reverted (the earlier variant is reused, not made again). The
 * others are listed with their own scores, never averaged with it, charted, put on Pareto fronts or tested.
 */
export interface SupersededVariant {
  variantId: string
  status: 'ready' | 'failed'
  method: string
  paramsLabel: string
  seriesLabel: string
  ratio: number
  createdAt: string
  /** When a sweep last planned it (earlier than the current variant's). */
  lastUsedAt: string
  /** The slug of the row that supersedes it; '' when the newest variant failed (ModelData.failures lists it). */
  supersededBy: string
  /** When a sweep last planned the current variant (its lastUsedAt). */
  supersededAt: string
  /** Its own scores by TaskInfo.key (no significance: it is compared with nothing). */
  cells: Record<string, Cell>
  /** Over all of ModelData.averageTasks, or null (missingTasks), as a row's. */
  average: number | null
  missingTasks: string[]
  calibration: StoredCalibration | null
  /** The transform's error, for a failed one. */
  error: string | null
}

export interface MethodInfo { name: string; slug: string; family: string; description: string; params: Record<string, StoredParamSpec>; reference: Record<string, string> | null }

export interface ModelData {
  id: string
  name: string
  slug: string
  architecture: string
  config: Record<string, unknown>
  tasks: TaskInfo[]
  /** Keys of the accuracy tasks every average covers (all accuracy columns of the model). */
  averageTasks: string[]
  rows: Row[]
  /** Rows with missingTasks (no average; recovery over their shared tasks only). */
  incompleteRows: number
  baseline: Row | null
  routingLoad: { layer: number; load: number[] }[] | null
  /**
   * The current failures (currentVariants.ts currentFailures, the rule `export` applies too): failed
   * variants (no task) and failed cells (a prepared variant whose task failed to score) of each row's
   * current variant; a failure a later success superseded is not listed (superseded lists the variant).
   */
  failures: { method: string; params: string; task: string | null; error: string }[]
  /** The other variants of the rows' (method, parameters, ratio), last used first within each (SupersededVariant). */
  superseded: SupersededVariant[]
}

export interface LeaderboardData {
  version: number
  title: string
  models: ModelData[]
  methods: MethodInfo[]
  generatedFrom: { sweeps: number; lastSweep: string | null }
}

/** Mean of `cells` over `keys` (all present). */
function meanOver(cells: Record<string, Cell>, keys: readonly string[]): number {
  return keys.reduce((s, k) => s + cells[k].value, 0) / keys.length
}

type ColumnOf = Pick<StoredRun, 'task' | 'taskVersion' | 'subset' | 'dataSha256' | 'scoringKey' | 'device' | 'ortVersion'>

/**
 * The column key of every (task, version, subset, data file, device) in `runs`: the bare name when a
 * task has one of each in the whole store, else the name with what tells its columns apart; and, for
 * a task scored on several devices, how a column's cells were scored. The device decides the graph's
 * precision, so its scores are another measurement; another onnxruntime or scoring version on the same
 * device is not a column of its own (latestPerCell keeps each cell's latest run): after an upgrade a
 * sweep re-scores every cell, and variants prepared since could never fill an old version's column.
 */
function columnKeys(runs: readonly ColumnOf[]): { keyOf: (c: ColumnOf) => string; scoringOf: (c: ColumnOf) => ScoringInfo | undefined } {
  const seen = new Map<string, { versions: Set<number>; subsets: Set<string>; data: Set<string>; devices: Set<string> }>()
  for (const c of runs) {
    const s = seen.get(c.task) ?? { versions: new Set(), subsets: new Set(), data: new Set(), devices: new Set() }
    seen.set(c.task, s)
    s.versions.add(c.taskVersion)
    s.subsets.add(c.subset)
    s.data.add(c.dataSha256)
    s.devices.add(c.device)
  }
  const scoringOf = (c: ColumnOf): ScoringInfo | undefined => {
    if (seen.get(c.task)!.devices.size < 2) return undefined
    const precision = (DEVICES as readonly string[]).includes(c.device) ? defaultPrecision(c.device as Device) : ''
    return { key: c.scoringKey, device: c.device, precision, ortVersion: c.ortVersion, label: c.device }
  }
  const keyOf = (c: ColumnOf) => {
    const s = seen.get(c.task)!
    const scoring = scoringOf(c)
    return `${c.task}${s.versions.size > 1 ? ` v${c.taskVersion}` : ''}${s.subsets.size > 1 ? ` [${c.subset}]` : ''}${s.data.size > 1 ? ` [data ${c.dataSha256.slice(0, 8) || 'unknown'}]` : ''}${scoring ? ` [${scoring.label}]` : ''}`
  }
  return { keyOf, scoringOf }
}

/**
 * `runs` less those a later run of the same cell (content, task, version, subset, data file) on the
 * same device superseded under another scoring key: a new SCORING_VERSION or onnxruntime version
 * re-scores every cell, and the old score is neither a measurement to show nor a column a variant
 * prepared since could ever fill (its average would stay null). The latest run stands, as it did before
 * columns were split; other devices keep columns of their own (columnKeys).
 * `runs` are in run id order within a task (completeRuns).
 */
function latestPerCell(runs: readonly StoredRun[]): StoredRun[] {
  const cell = (r: StoredRun) => JSON.stringify([r.contentHash, r.task, r.taskVersion, r.subset, r.dataSha256, r.device])
  const latest = new Map(runs.map(r => [cell(r), r.scoringKey]))
  return runs.filter(r => latest.get(cell(r)) === r.scoringKey)
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
 * columns (task × version × subset × data file × device) of its complete runs, one row per (method,
 * parameters, ratio): the variant a sweep used last (the unpruned model once; the others in ModelData.superseded,
 * SupersededVariant), failed variants, and paired significance (evaluation-protocol.md §5) against the
 * unpruned model and against the best row at the same ratio. Higher-is-better is the flag the
 * evaluation stored with the metric; a task whose primary metric no complete run stored (so it has
 * no cells) counts as higher-is-better.
 * Aggregates compare like with like: a row's average covers all of the model's accuracy tasks or is
 * null (a shard, a partial sweep or failed cells leave rows incomplete); recovery divides means over
 * the same tasks of the row and the unpruned model (Row.recoveryTasks).
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
  const storedModels = store.storedModels()
  // Two checkpoints recorded under one name (a re-downloaded or edited checkpoint at the same path, two
  // configs reusing a name) were two sections titled alike: the fingerprint's first digits tell them apart.
  const sameName = (name: string) => storedModels.filter(x => x.name === name).length > 1
  const shownName = (m: { name: string; id: string }) => (sameName(m.name) ? `${m.name} [${m.id.slice(0, 8)}]` : m.name)
  const runsOf = new Map(storedModels.map(m => [m.id, latestPerCell(store.completeRuns(m.id))]))
  const { keyOf, scoringOf } = columnKeys([...runsOf.values()].flat())
  for (const m of storedModels) {
    const runs = runsOf.get(m.id)!
    const columns = new Map<string, StoredRun>()
    // The latest run of each column describes it (TaskInfo.scoring: the onnxruntime version its latest cells used).
    for (const r of runs) columns.set(keyOf(r), r)
    const tasks: TaskInfo[] = [...columns.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, r]) => {
      const t = taskMeta.get(`${r.task}@${r.taskVersion}`)
      const metric = t?.primaryMetric ?? 'acc'
      const higherIsBetter = store.metricHigherIsBetter(r.task, r.taskVersion, metric) ?? true
      const scoring = scoringOf(r)
      return { key, name: r.task, slug: slugify(key), version: r.taskVersion, subset: r.subset, dataSha256: r.dataSha256, kind: t?.kind ?? 'unknown', description: t?.description ?? '', metric, higherIsBetter, isAccuracy: higherIsBetter, ...(scoring ? { scoring } : {}) }
    })
    const averageTasks = tasks.filter(t => t.isAccuracy).map(t => t.key)
    const variants = store.storedVariants(m.id)
    // The latest run wins: a cell re-scored under a new key (other task data, scoring version) supersedes older rows.
    const runOf = (hash: string, task: TaskInfo) => runs.findLast(r => r.contentHash === hash && keyOf(r) === task.key)
    const correctnessCache = new Map<number, number[] | null>()
    const correctness = (runId: number, task: TaskInfo): number[] | null => {
      if (!correctnessCache.has(runId)) correctnessCache.set(runId, store.sampleCorrectness(runId, task.kind, task.metric))
      return correctnessCache.get(runId) ?? null
    }
    const failures: ModelData['failures'] = []
    const rows: Row[] = []
    const hashOf = new Map<string, string>()
    const defaultsOf = (method: string) => methods.find(x => x.name === method)?.params ?? {}
    // One rule for which variant is a row's current one, and so which failures are current (the export applies it too).
    const selection = selectVariants(variants, defaultsOf)
    const { identityOf, current: newest } = selection
    const cellsOf = (contentHash: string) => {
      const cells: Record<string, Cell> = {}
      let tokens = 0, seconds = 0
      for (const t of tasks) {
        const run = runOf(contentHash, t)
        if (!run) continue
        const metric = store.runMetric(run.runId, t.metric)
        if (!metric) continue
        cells[t.key] = { value: metric.value, stderr: metric.stderr, docs: run.docs }
        tokens += run.tokensProcessed
        seconds += run.seconds - (run.sessionSeconds ?? 0)
      }
      const missingTasks = averageTasks.filter(k => !cells[k])
      const average = averageTasks.length && !missingTasks.length ? meanOver(cells, averageTasks) : null
      return { cells, missingTasks, average, tokensPerSecond: seconds > 0 ? tokens / seconds : null }
    }
    const labelOf = (v: StoredVariant) => nonDefaultParams(paramsOf(v), defaultsOf(v.method)).map(([k, x]) => `${k}=${x}`).join(' ')
    const olderOf = new Map<string, StoredVariant[]>()
    let baselineSeen = false
    for (const v of variants) {
      if (!selection.isCurrent(v)) {
        olderOf.set(identityOf(v), [...(olderOf.get(identityOf(v)) ?? []), v])
        continue
      }
      // A current failed variant: listed with the failed cells below (currentFailures).
      if (v.status !== 'ready') continue
      const isBaseline = isBaselineVariant(v)
      if (isBaseline && baselineSeen) continue
      hashOf.set(v.variantId, v.contentHash)
      // Only what differs from the method's defaults names a series.
      const paramsLabel = labelOf(v)
      const { cells, missingTasks, average, tokensPerSecond } = cellsOf(v.contentHash)
      if (isBaseline) baselineSeen = true
      rows.push({
        variantId: v.variantId, slug: '', method: isBaseline ? 'unpruned' : v.method, family: isBaseline ? 'baseline' : familyOf.get(v.method) ?? 'unknown',
        params: v.params, paramsLabel: isBaseline ? '' : paramsLabel, ratio: v.ratio, achievedRatio: v.achievedRatio, isBaseline, cells, average, missingTasks, recovery: null, recoveryTasks: [],
        accounting: v.accounting, tokensPerSecond,
        warnings: v.warnings, notes: v.notes,
        seriesLabel: isBaseline ? 'unpruned' : paramsLabel ? `${v.method} (${paramsLabel})` : v.method,
        calibration: v.calibration, createdAt: v.createdAt, lastUsedAt: v.lastUsedAt, superseded: 0, olderComplete: null,
      })
    }
    rows.sort((a, b) => Number(b.isBaseline) - Number(a.isBaseline) || a.method.localeCompare(b.method) || a.paramsLabel.localeCompare(b.paramsLabel) || a.ratio - b.ratio)
    const baseline = rows.find(r => r.isBaseline) ?? null
    for (const r of rows) {
      r.slug = unique(slugify(`${shownName(m)}-${r.isBaseline ? 'unpruned' : `${r.method}-${r.paramsLabel}-${r.ratio}`}`))
      r.superseded = r.isBaseline ? 0 : olderOf.get(rowIdentity(r.method, r.ratio, r.params, defaultsOf(r.method)))?.length ?? 0
      if (!baseline) continue
      // Never a mean over one set of tasks divided by a mean over another: both over the tasks both scored.
      const shared = averageTasks.filter(k => r.cells[k] && baseline.cells[k])
      const base = shared.length ? meanOver(baseline.cells, shared) : 0
      if (base > 0) {
        r.recovery = (100 * meanOver(r.cells, shared)) / base
        r.recoveryTasks = shared
      }
    }
    const superseded: SupersededVariant[] = []
    for (const [identity, older] of olderOf) {
      const current = newest.get(identity)!
      // A ratio-0 variant with no edits is the unpruned row, whichever variant stands for it there.
      const row = isBaselineVariant(current) ? baseline ?? undefined : current.status === 'ready' ? rows.find(r => r.variantId === current.variantId) : undefined
      for (const v of [...older].sort((a, b) => (newer(a, b) ? -1 : 1))) {
        const paramsLabel = labelOf(v)
        const scored = v.status === 'ready' ? cellsOf(v.contentHash) : { cells: {}, missingTasks: averageTasks, average: null }
        superseded.push({
          variantId: v.variantId, status: v.status, method: v.method, paramsLabel, seriesLabel: paramsLabel ? `${v.method} (${paramsLabel})` : v.method,
          ratio: v.ratio, createdAt: v.createdAt, lastUsedAt: v.lastUsedAt, supersededBy: row?.slug ?? '', supersededAt: current.lastUsedAt,
          cells: scored.cells, average: scored.average, missingTasks: scored.missingTasks,
          calibration: v.status === 'ready' ? v.calibration : null, error: v.status === 'failed' ? v.error ?? 'failed' : null,
        })
        if (row && row.missingTasks.length && !row.olderComplete && scored.average !== null) {
          row.olderComplete = { variantId: v.variantId, createdAt: v.createdAt, lastUsedAt: v.lastUsedAt, average: scored.average }
        }
      }
    }
    const latestFirst = (a: string, b: string) => (a < b ? 1 : a > b ? -1 : 0)
    superseded.sort((a, b) => a.method.localeCompare(b.method) || a.paramsLabel.localeCompare(b.paramsLabel) || a.ratio - b.ratio || latestFirst(a.lastUsedAt, b.lastUsedAt) || latestFirst(a.createdAt, b.createdAt))
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
        const cell = r.cells[t.key]
        if (!cell) continue
        if (baseline && r !== baseline && baseline.cells[t.key]) cell.vsBaseline = compare(r, baseline)
        const peers = rows.filter(x => !x.isBaseline && x.ratio === r.ratio && x.cells[t.key])
        if (peers.length > 1 && !r.isBaseline) {
          const best = peers.reduce((a, b) => ((t.higherIsBetter ? b.cells[t.key].value > a.cells[t.key].value : b.cells[t.key].value < a.cells[t.key].value) ? b : a))
          if (best !== r) {
            const res = compare(r, best)
            if (res) cell.vsBest = { ...res, best: best.seriesLabel }
          }
        }
      }
    }
    // Current failures only: failed variants that are their row's current one, failed cells of current
    // variants (the unpruned model once); a failure a later sweep completed is not one (superseded, it is history on the method page).
    for (const f of currentFailures(variants, store.failedRuns(m.id), selection)) {
      failures.push({ method: f.baseline ? 'unpruned' : f.variant.method, params: f.baseline ? '' : f.variant.paramsJson, task: f.task, error: f.error })
    }
    models.push({
      id: m.id, name: shownName(m), slug: unique(slugify(shownName(m))), architecture: m.architecture, config: m.config, tasks, averageTasks, rows,
      incompleteRows: rows.filter(r => r.missingTasks.length).length, baseline,
      routingLoad: store.routingLoad(m.id), failures, superseded,
    })
  }
  return { version: LEADERBOARD_VERSION, title, models, methods, generatedFrom: store.sweepSummary() }
}
