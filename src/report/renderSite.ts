// The static site in two steps: buildPages() is a pure step from LeaderboardData and a Theme (the
// handlebars templates and assets, loadTheme()) to pages (handlebars + inline SVG charts + inline
// CSS/JS); writeSite() writes them through the output-path rule. Deterministic: the same database
// gives byte-identical pages. Works from file:// with no network.
import fs from 'node:fs'
import path from 'node:path'
import { stringify } from 'csv-stringify/sync'
import Handlebars from 'handlebars'
import { REPORTS_DIR } from '../paths.ts'
import { derivedNumber, readableNumber } from '../util/numberFormat.ts'
import { writeOutputDir, type OutputContext } from '../util/outputPaths.ts'
import { paramValuesText } from '../methods/paramText.ts'
import type { StoredParamSpec } from '../store/reads.ts'
import { expertMap, paretoChart, ratioCurves, routingHeatmap, seriesColors } from './charts.ts'
import type { Cell, LeaderboardData, ModelData, Row, ScoringInfo, TaskInfo } from './leaderboardData.ts'
import type { PairedResult } from './significance.ts'

const SIGNIFICANT = 0.05

/**
 * Accuracy tasks the store holds in several columns (task versions, document subsets or data files
 * that differ): no row can have them all unless scored under every one, so rerunning one sweep does
 * not complete the rows; the leaderboard says so beside the incomplete note. Columns that differ only
 * in device are scoringSplitTasks'.
 */
function splitTasks(model: ModelData): string[] {
  const columns = new Map<string, Set<string>>()
  for (const t of model.tasks) {
    if (!t.isAccuracy) continue
    const seen = columns.get(t.name) ?? new Set()
    columns.set(t.name, seen.add(JSON.stringify([t.version, t.subset, t.dataSha256])))
  }
  return [...columns].filter(([, c]) => c.size > 1).map(([name]) => name)
}

/** Tasks split by device (TaskInfo.scoring), accuracy ones only when `accuracyOnly`, in column order. */
function scoringSplitTasks(model: ModelData, accuracyOnly: boolean): string[] {
  return [...new Set(model.tasks.filter(t => t.scoring && (t.isAccuracy || !accuracyOnly)).map(t => t.name))]
}

/** The legend of a model's device-split columns: per task, each device with its precision. */
function scoringLegend(model: ModelData): { name: string; columns: ScoringInfo[] }[] {
  return scoringSplitTasks(model, false).map(name => {
    const columns = [...new Map(model.tasks.filter(t => t.name === name && t.scoring).map(t => [t.scoring!.label, t.scoring!])).values()]
    return { name, columns }
  })
}

/** Why a row has no recovery (shown on its '–'). */
function recoveryMissing(row: Row, model: ModelData): string {
  if (!model.baseline) return 'no unpruned baseline scored for this model: add ratio 0 to the sweep'
  if (!model.averageTasks.length) return 'the model has no accuracy task to compare'
  return 'this row and the unpruned model share no scored accuracy task: score both on the same tasks'
}

/** A recovery over fewer than all of the model's accuracy tasks (the row or the unpruned model lacks some). */
function isPartialRecovery(row: Row, model: ModelData): boolean {
  return row.recovery !== null && row.recoveryTasks.length < model.averageTasks.length
}

/**
 * The leaderboard as CSV: one line per model × variant, a column per task (`<task key> <metric>`,
 * the union over models; empty where not scored), then the aggregates with the tasks they cover:
 * `average` only for complete rows, over `average_tasks`; `status` 'incomplete' with `missing_tasks`
 * otherwise; `recovery` over `recovery_tasks` (the tasks the row and the unpruned model both scored).
 * Task lists are ';'-separated keys. `tokens_per_second` is scoring throughput (Row.tokensPerSecond:
 * the seconds spent opening the variant's session left out). Stored metrics at full precision; the
 * derived `average`, `recovery` and `tokens_per_second` to 12 significant digits
 * (util/numberFormat.ts derivedNumber: summing left float noise such as 0.6000000000000001).
 */
export function leaderboardCsv(data: LeaderboardData): string {
  const tasks = [...new Map(data.models.flatMap(m => m.tasks).map(t => [t.key, t])).values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const header = [
    'model', 'model_id', 'variant_id', 'method', 'params', 'ratio', 'achieved_ratio', ...tasks.map(t => `${t.key} ${t.metric}`),
    'status', 'tasks_scored', 'missing_tasks', 'average', 'average_tasks', 'recovery', 'recovery_tasks', 'memory_bytes', 'active_params_per_token', 'tokens_per_second',
  ]
  const lines: unknown[][] = [header]
  for (const m of data.models) {
    for (const r of m.rows) {
      const complete = r.missingTasks.length === 0
      lines.push([
        m.name, m.id, r.variantId, r.method, r.isBaseline ? '' : JSON.stringify(r.params), r.ratio, r.achievedRatio, ...tasks.map(t => r.cells[t.key]?.value ?? null),
        complete ? 'complete' : 'incomplete', `${m.averageTasks.length - r.missingTasks.length} of ${m.averageTasks.length}`, r.missingTasks.join(';'),
        derivedNumber(r.average), r.average === null ? '' : m.averageTasks.join(';'), derivedNumber(r.recovery), r.recovery === null ? '' : r.recoveryTasks.join(';'),
        r.accounting.memoryBytes, r.accounting.activeParamsPerToken, derivedNumber(r.tokensPerSecond),
      ])
    }
  }
  return stringify(lines)
}

/** One output file of the site: `path` relative to the site folder (no folders), `content` UTF-8 text. */
export interface Page { path: string; content: string }

/** What the pages are made of: page templates and partials by name (file name without .hbs), and the inlined CSS and JS. */
export interface Theme { templates: Record<string, string>; partials: Record<string, string>; css: string; js: string }

/** Reads a theme from `dir` (templates/*.hbs, templates/partials/*.hbs, assets/site.css, assets/site.js); default: reports/. */
export function loadTheme(dir: string = REPORTS_DIR): Theme {
  const hbs = (folder: string) => Object.fromEntries(fs.readdirSync(folder).filter(f => f.endsWith('.hbs')).sort().map(f => [f.replace(/\.hbs$/, ''), fs.readFileSync(path.join(folder, f), 'utf8')]))
  return {
    templates: hbs(path.join(dir, 'templates')),
    partials: hbs(path.join(dir, 'templates', 'partials')),
    css: fs.readFileSync(path.join(dir, 'assets', 'site.css'), 'utf8'),
    js: fs.readFileSync(path.join(dir, 'assets', 'site.js'), 'utf8'),
  }
}

function createEngine(theme: Theme): typeof Handlebars {
  const hb = Handlebars.create()
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null)
  // Scientific notation from 1e6 (a diverged perplexity printed all 16 digits); exact values stay in the CSV.
  hb.registerHelper('fixed', (v: unknown, digits: number) => (num(v) === null ? '–' : readableNumber(v as number, digits)))
  hb.registerHelper('metricValue', (v: unknown, task: TaskInfo) => {
    const n = num(v)
    if (n === null) return '–'
    return readableNumber(n, task.isAccuracy ? 4 : n >= 100 ? 1 : 3)
  })
  hb.registerHelper('bytes', (v: unknown) => (num(v) === null ? '–' : `${((v as number) / 2 ** 20).toFixed(1)} MiB`))
  hb.registerHelper('millions', (v: unknown) => (num(v) === null ? '–' : `${((v as number) / 1e6).toFixed(2)} M`))
  hb.registerHelper('pvalue', (p: number) => (p < 1e-4 ? p.toExponential(1) : p.toFixed(4)))
  hb.registerHelper('json', (v: unknown) => JSON.stringify(v))
  hb.registerHelper('shortId', (v: string) => v.slice(0, 12))
  hb.registerHelper('join', (v: unknown) => (Array.isArray(v) && v.length ? v.join(', ') : '–'))
  hb.registerHelper('groups', (g: number[][]) => (g?.length ? g.map(x => `{${x.join(',')}}`).join(' ') : '–'))
  hb.registerHelper('layerSummary', (layers: Row['accounting']['layers']) => layers.map(l => {
    const parts = [`L${l.layer}: ${l.kept.length}/${l.experts} kept`]
    if (l.removed.length) parts.push(`removed ${l.removed.join(',')}`)
    if (l.groups.length) parts.push(`merged ${l.groups.map(g => `{${g.join(',')}}`).join(' ')}`)
    if (l.novices.length) parts.push(`novices ${l.novices.join(',')}`)
    if (l.neuronKeep !== undefined) parts.push(`neuron keep ${l.neuronKeep}`)
    if (l.skipSecondBeta !== undefined) parts.push(`skip β ${l.skipSecondBeta.toFixed(3)}`)
    return parts.join(' ')
  }).join(' · '))
  hb.registerHelper('taskCount', (row: Row, model: ModelData) => `${model.averageTasks.length - row.missingTasks.length}/${model.averageTasks.length}`)
  hb.registerHelper('partialRecovery', (row: Row, model: ModelData) => isPartialRecovery(row, model))
  hb.registerHelper('olderCompleteRows', (model: ModelData) => model.rows.some(r => r.olderComplete))
  hb.registerHelper('recoveryMissing', (row: Row, model: ModelData) => recoveryMissing(row, model))
  hb.registerHelper('paramValues', (name: string, spec: StoredParamSpec) => paramValuesText(name, spec) || spec.type)
  hb.registerHelper('date', (iso: unknown) => (typeof iso === 'string' && iso ? iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC') : '–'))
  hb.registerHelper('splitTasks', (model: ModelData) => splitTasks(model).join(', '))
  hb.registerHelper('scoringSplitTasks', (model: ModelData) => scoringSplitTasks(model, true).join(', '))
  hb.registerHelper('anySplit', (model: ModelData) => splitTasks(model).length + scoringSplitTasks(model, true).length > 0)
  hb.registerHelper('scoringLegend', (model: ModelData) => scoringLegend(model))
  hb.registerHelper('cellsOf', (row: Row, tasks: TaskInfo[]) => tasks.map(task => ({ task, cell: row.cells[task.key] })))
  // Which way a paired difference goes, in the task's own sense (higher accuracy, lower perplexity).
  hb.registerHelper('favours', (r: PairedResult | undefined) => (r?.favours === 'a' ? 'better, ' : r?.favours === 'b' ? 'worse, ' : ''))
  hb.registerHelper('sigMarks', (cell: Cell | undefined) => {
    if (!cell) return ''
    const esc = hb.Utils.escapeExpression
    let out = ''
    if (cell.vsBaseline && cell.vsBaseline.p < SIGNIFICANT) {
      // The arrow says which way: a pruned model can be significantly better than the unpruned one (it always showed ▼).
      const better = cell.vsBaseline.favours === 'a'
      out += `<span class="sig base" title="${esc(`${better ? 'better' : 'worse'} than unpruned: ${cell.vsBaseline.test}, p = ${cell.vsBaseline.p.toPrecision(3)} (${cell.vsBaseline.detail})`)}">${better ? '▲' : '▼'}</span>`
    }
    if (cell.vsBest && cell.vsBest.p < SIGNIFICANT) {
      out += `<span class="sig best" title="${esc(`vs best at this ratio (${cell.vsBest.best}): ${cell.vsBest.test}, p = ${cell.vsBest.p.toPrecision(3)} (${cell.vsBest.detail})`)}">◆</span>`
    }
    return new hb.SafeString(out)
  })
  for (const [name, source] of Object.entries(theme.partials)) hb.registerPartial(name, source)
  return hb
}

interface SiteModel extends ModelData {
  charts: { average: string; paretoMemory: string; paretoActive: string; routing: string }
  taskCharts: { task: TaskInfo; svg: string }[]
  methodNames: string[]
  ratioValues: number[]
}

/**
 * Every page of the site for `data`, sorted by path: the HTML pages, then leaderboard.csv (one line
 * per row, leaderboardCsv) and leaderboard.json (the data itself). Pure: it reads nothing but its arguments (the default theme is read from reports/) and
 * writes no file.
 * Errors: a template the theme lacks (TypeError from handlebars) or one that fails to compile.
 */
export async function buildPages(data: LeaderboardData, theme: Theme = loadTheme()): Promise<Page[]> {
  const hb = createEngine(theme)
  const template = (name: string) => {
    const source = theme.templates[name]
    if (source === undefined) throw new TypeError(`the report theme has no template ${name}.hbs`)
    return hb.compile(source, { strict: false })
  }
  const layout = template('layout')
  const { css, js } = theme
  const site = { title: data.title, models: data.models.map(m => ({ name: m.name, slug: m.slug })), generatedFrom: data.generatedFrom }
  const pages = new Map<string, string>()
  const page = (file: string, name: string, title: string, context: object) => {
    pages.set(file, layout({ site, pageTitle: title, css, js, body: template(name)({ site, ...context }) }))
  }

  // One colour per series on every page (the index shows every model's charts side by side).
  const colors = seriesColors(data.models.flatMap(m => m.rows.map(r => r.seriesLabel)))
  const models: SiteModel[] = []
  for (const m of data.models) {
    const accuracy = m.tasks.filter(t => t.isAccuracy)
    models.push({
      ...m,
      charts: {
        average: accuracy.length ? await ratioCurves(m, r => (r.average === null ? null : { value: r.average, stderr: null }), 'average accuracy', true, colors) : '',
        paretoMemory: accuracy.length ? await paretoChart(m, 'memory', colors) : '',
        paretoActive: accuracy.length ? await paretoChart(m, 'active', colors) : '',
        routing: m.routingLoad ? await routingHeatmap(m.routingLoad) : '',
      },
      taskCharts: await Promise.all(m.tasks.map(async task => ({ task, svg: await ratioCurves(m, r => r.cells[task.key] ?? null, task.metric, task.higherIsBetter, colors) }))),
      methodNames: [...new Set(m.rows.map(r => r.method))].sort(),
      ratioValues: [...new Set(m.rows.map(r => r.ratio))].sort((a, b) => a - b),
    })
  }

  page('index.html', 'index', 'Overview', { models })
  for (const m of models) {
    page(`model-${m.slug}.html`, 'model', m.name, { model: m })
    for (const row of m.rows) {
      page(`run-${row.slug}.html`, 'run', `${m.name}: ${row.seriesLabel} r=${row.ratio}`, {
        model: m, row, methodSlug: data.methods.find(x => x.name === row.method)?.slug ?? '',
        scores: m.tasks.filter(t => row.cells[t.key]).map(task => ({ task, cell: row.cells[task.key] })),
        expertMap: row.accounting.layers.length ? await expertMap(row) : '',
        routing: m.charts.routing,
      })
    }
  }
  page('methods.html', 'methods', 'Methods', { methods: data.methods })
  for (const method of data.methods) {
    const perModel = []
    for (const m of models) {
      const rows = m.rows.filter(r => r.method === method.name)
      const superseded = m.superseded.filter(s => s.method === method.name)
      if (!rows.length && !superseded.length) continue
      const sub: ModelData = { ...m, rows: [...(m.baseline ? [m.baseline] : []), ...rows] }
      const charts = [
        { title: 'average accuracy vs ratio', svg: await ratioCurves(sub, r => (r.average === null ? null : { value: r.average, stderr: null }), 'average accuracy', true, colors) },
        ...(await Promise.all(m.tasks.map(async t => ({ title: `${t.key}: ${t.metric}`, svg: await ratioCurves(sub, r => r.cells[t.key] ?? null, t.metric, t.higherIsBetter, colors) })))),
      ].filter(c => c.svg)
      perModel.push({ model: m, rows, charts, superseded })
    }
    page(`method-${method.slug}.html`, 'method', method.name, { method, paramList: Object.entries(method.params).map(([name, spec]) => ({ name, spec })), models: perModel })
  }
  const allTasks = [...new Map(models.flatMap(m => m.tasks).map(t => [t.slug, t])).values()].sort((a, b) => a.key.localeCompare(b.key))
  page('tasks.html', 'tasks', 'Tasks', { tasks: allTasks })
  for (const task of allTasks) {
    const perModel = []
    for (const m of models) {
      const t = m.tasks.find(x => x.slug === task.slug)
      if (!t) continue
      perModel.push({ model: m, svg: await ratioCurves(m, r => r.cells[t.key] ?? null, t.metric, t.higherIsBetter, colors), rows: m.rows.filter(r => r.cells[t.key]).map(row => ({ row, cell: row.cells[t.key] })) })
    }
    page(`task-${task.slug}.html`, 'task', task.key, { task, models: perModel })
  }

  return [
    ...[...pages.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([file, content]) => ({ path: file, content })),
    { path: 'leaderboard.csv', content: leaderboardCsv(data) },
    { path: 'leaderboard.json', content: JSON.stringify(data, null, 1) },
  ]
}

/**
 * Writes `pages` as the site in `outDir` through the output-path rule (src/util/outputPaths.ts):
 * built beside the target and swapped in; OUTPUT_UNSAFE when `outDir` is not ours to replace,
 * OUTPUT_FAILED on write errors; either way the previous site is untouched.
 */
export function writeSite(pages: readonly Page[], outDir: string, output: OutputContext = { source: 'the report folder' }): void {
  writeOutputDir(outDir, 'report', output, tmp => {
    for (const p of pages) fs.writeFileSync(path.join(tmp, p.path), p.content)
  })
}

/** buildPages() then writeSite(); returns the HTML page file names, sorted. */
export async function renderSite(data: LeaderboardData, outDir: string, output: OutputContext = { source: 'the report folder' }): Promise<string[]> {
  const pages = await buildPages(data)
  writeSite(pages, outDir, output)
  return pages.map(p => p.path).filter(p => p.endsWith('.html'))
}
