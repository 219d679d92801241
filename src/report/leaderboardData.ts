// Reads the SQLite store (only) into the plain, schema-versioned data every page is rendered from.
import type { ResultsStore } from '../store/resultsStore.ts'
import type { VariantAccounting } from '../variants/accounting.ts'
import { compareCorrectness, comparePerplexity, type PairedResult } from './significance.ts'

export const LEADERBOARD_VERSION = 1
/** Content hash of a variant with no edits: the unpruned model. */
export const BASELINE_CONTENT = 'e3b0c44298fc1c149afbf4c8'

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
  calibration: { procedure: 'one-pass' | 'sequential'; tokens: number; seconds: number } | null
}

function calibrationOf(json: string | null): Row['calibration'] {
  const c = json ? JSON.parse(json) : null
  if (!c) return null
  return { procedure: c.procedure === 'sequential' ? 'sequential' : 'one-pass', tokens: Number(c.tokens ?? 0), seconds: Number(c.seconds ?? 0) }
}

export interface MethodInfo { name: string; slug: string; family: string; description: string; params: Record<string, { type: string; default: unknown; description: string; values?: string[] }>; reference: Record<string, string> | null }

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
  failures: { method: string; params: string; error: string }[]
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

interface SampleData { doc: number; gold: number | number[] | null; lls: number[]; greedy: boolean[]; preds: Record<string, number>; counts: { words: number; bytes: number } | null }

export function summarize(store: ResultsStore, title: string): LeaderboardData {
  const methodRows = store.all<any>('SELECT * FROM method_info ORDER BY name')
  const methods: MethodInfo[] = methodRows.map(m => ({
    name: m.name, slug: slugify(m.name), family: m.family, description: m.description, params: JSON.parse(m.params_json), reference: m.reference_json ? JSON.parse(m.reference_json) : null,
  }))
  const familyOf = new Map(methods.map(m => [m.name, m.family]))
  const taskRows = store.all<any>('SELECT * FROM task_info ORDER BY name, version')
  const taskMeta = new Map(taskRows.map(t => [`${t.name}@${t.version}`, t]))
  const models: ModelData[] = []
  const usedSlugs = new Set<string>()
  const unique = (base: string) => {
    let s = base, i = 2
    while (usedSlugs.has(s)) s = `${base}-${i++}`
    usedSlugs.add(s)
    return s
  }
  for (const m of store.all<any>('SELECT * FROM models ORDER BY name, model_id')) {
    const runs = store.all<any>(`SELECT * FROM runs WHERE model_id = ? AND status = 'complete' ORDER BY task, run_id`, m.model_id)
    const taskKeys = [...new Set(runs.map(r => `${r.task}@${r.task_version}`))].sort()
    const tasks: TaskInfo[] = taskKeys.map(k => {
      const t = taskMeta.get(k)
      const [name, version] = k.split('@')
      const metric = t?.primary_metric ?? 'acc'
      const higherIsBetter = !/perplexity|bits_per_byte/.test(metric)
      return { name, slug: slugify(name), version: Number(version), kind: t?.kind ?? 'unknown', description: t?.description ?? '', metric, higherIsBetter, isAccuracy: higherIsBetter }
    })
    const variants = store.all<any>(`SELECT * FROM variants WHERE model_id = ? ORDER BY method, params_json, ratio, variant_id`, m.model_id)
    const runOf = (hash: string, task: TaskInfo) => runs.find(r => r.content_hash === hash && r.task === task.name && r.task_version === task.version)
    const samplesCache = new Map<number, SampleData[]>()
    const samplesOf = (runId: number): SampleData[] => {
      let s = samplesCache.get(runId)
      if (!s) {
        s = store.all<any>('SELECT * FROM samples WHERE run_id = ? ORDER BY doc', runId).map(x => ({
          doc: x.doc, gold: JSON.parse(x.gold_json), lls: JSON.parse(x.lls_json), greedy: JSON.parse(x.greedy_json), preds: JSON.parse(x.preds_json), counts: x.counts_json ? JSON.parse(x.counts_json) : null,
        }))
        samplesCache.set(runId, s)
      }
      return s
    }
    const correctness = (runId: number, task: TaskInfo) => samplesOf(runId).map(s => {
      if (task.kind === 'loglikelihood') return s.greedy[0] ? 1 : 0
      const pred = s.preds[task.metric]
      return Array.isArray(s.gold) ? (s.gold.includes(pred) ? 1 : 0) : pred === s.gold ? 1 : 0
    })
    const failures: ModelData['failures'] = []
    const rows: Row[] = []
    let baselineSeen = false
    for (const v of variants) {
      if (v.status !== 'ready') {
        failures.push({ method: v.method, params: v.params_json, error: v.error ?? 'failed' })
        continue
      }
      const isBaseline = v.content_hash === BASELINE_CONTENT && Number(v.ratio) === 0
      if (isBaseline && baselineSeen) continue
      const params = JSON.parse(v.params_json) as Record<string, unknown>
      // Only what differs from the method's defaults names a series.
      const defaults = methods.find(x => x.name === v.method)?.params ?? {}
      const paramsLabel = Object.entries(params).filter(([k, x]) => k !== 'ratio' && defaults[k]?.default !== x).map(([k, x]) => `${k}=${x}`).join(' ')
      const cells: Record<string, Cell> = {}
      let tokens = 0, seconds = 0
      for (const t of tasks) {
        const run = runOf(v.content_hash, t)
        if (!run) continue
        const metric = store.all<any>('SELECT value, stderr FROM metrics WHERE run_id = ? AND metric = ?', run.run_id, t.metric)[0]
        if (!metric) continue
        cells[t.name] = { value: metric.value, stderr: metric.stderr, docs: run.docs }
        tokens += run.tokens_processed
        seconds += run.seconds
      }
      if (isBaseline) baselineSeen = true
      const accuracyTasks = tasks.filter(t => t.isAccuracy && cells[t.name])
      const average = accuracyTasks.length ? accuracyTasks.reduce((s, t) => s + cells[t.name].value, 0) / accuracyTasks.length : null
      rows.push({
        variantId: v.variant_id, slug: '', method: isBaseline ? 'unpruned' : v.method, family: isBaseline ? 'baseline' : familyOf.get(v.method) ?? 'unknown',
        params, paramsLabel: isBaseline ? '' : paramsLabel, ratio: Number(v.ratio), achievedRatio: Number(v.achieved_ratio ?? 0), isBaseline, cells, average, recovery: null,
        accounting: JSON.parse(v.accounting_json), tokensPerSecond: seconds > 0 ? tokens / seconds : null,
        warnings: JSON.parse(v.warnings_json ?? '[]'), notes: JSON.parse(v.report_json ?? '{}').notes ?? {},
        seriesLabel: isBaseline ? 'unpruned' : paramsLabel ? `${v.method} (${paramsLabel})` : v.method,
        calibration: calibrationOf(v.calibration_json),
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
      const hashOf = (r: Row) => variants.find(v => v.variant_id === r.variantId)!.content_hash as string
      const compare = (a: Row, b: Row): PairedResult | undefined => {
        const ra = runOf(hashOf(a), t), rb = runOf(hashOf(b), t)
        if (!ra || !rb) return undefined
        if (t.isAccuracy) return compareCorrectness(correctness(ra.run_id, t), correctness(rb.run_id, t))
        const sa = samplesOf(ra.run_id), sb = samplesOf(rb.run_id)
        if (!sa[0]?.counts) return undefined
        return comparePerplexity(sa.map(s => s.lls[0]), sb.map(s => s.lls[0]), sa.map(s => (t.metric === 'word_perplexity' ? s.counts!.words : s.counts!.bytes)))
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
    const cal = store.all<any>('SELECT routing_load_json FROM calibrations WHERE model_id = ? AND routing_load_json IS NOT NULL ORDER BY calibration_key', m.model_id)[0]
    models.push({
      id: m.model_id, name: m.name, slug: unique(slugify(m.name)), architecture: m.architecture, config: JSON.parse(m.config_json), tasks, rows, baseline,
      routingLoad: cal ? JSON.parse(cal.routing_load_json) : null, failures,
    })
  }
  const sweeps = store.all<any>('SELECT COUNT(*) AS n, MAX(finished_at) AS last FROM sweeps')[0]
  return { version: LEADERBOARD_VERSION, title, models, methods, generatedFrom: { sweeps: sweeps.n, lastSweep: sweeps.last } }
}
