// Static SVG charts, rendered at build time with vega-lite (no script runs in the page).
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'
import type { ModelData, Row } from './leaderboardData.ts'

const CONFIG = {
  font: 'system-ui, sans-serif',
  axis: { labelFontSize: 11, titleFontSize: 12, grid: true, gridColor: '#e5e7eb' },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 260 },
  view: { stroke: '#d1d5db' },
}

export async function renderSvg(spec: Record<string, unknown>): Promise<string> {
  const full = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', config: CONFIG, background: 'white', ...spec } as TopLevelSpec
  const view = new vega.View(vega.parse(compile(full).spec), { renderer: 'none' })
  const svg = await view.toSVG()
  view.finalize()
  return svg
}

/**
 * A series label's colour, the same in every chart that shows it (series are keyed by label, so
 * `unpruned` in a Pareto chart never shifts the methods' colours): build one with seriesColors over
 * every label the pages can show.
 */
export type SeriesColors = ReadonlyMap<string, string>

/** Tableau 20, in its order (vega's `tableau20` scheme); the unpruned model is always dark grey. */
const PALETTE = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#eeca3b', '#b279a2', '#ff9da6', '#9d755d', '#bab0ac',
  '#9ecae9', '#ffbf79', '#88d27a', '#ff9d98', '#83bcb6', '#f2cf5b', '#d6a5c9', '#fcbfd2', '#d8b5a5', '#79706e']
const UNPRUNED_COLOUR = '#374151'

/** One colour per label: `unpruned` grey, the others from the palette in sorted label order (cycling past 20). */
export function seriesColors(labels: Iterable<string>): SeriesColors {
  const sorted = [...new Set(labels)].filter(l => l !== 'unpruned').sort()
  return new Map([['unpruned', UNPRUNED_COLOUR], ...sorted.map((l, i): [string, string] => [l, PALETTE[i % PALETTE.length]])])
}

/** A colour encoding over the labels `present` (legend in the colours' order), each in its page-wide colour. */
function colorEncoding(field: string, present: readonly string[], colors: SeriesColors): Record<string, unknown> {
  const domain = [...colors.keys()].filter(l => present.includes(l))
  return { field, type: 'nominal', title: 'method', scale: { domain, range: domain.map(l => colors.get(l)!) } }
}

/** Axis numbers with at most 4 significant digits and a few ticks (never `6.040064`). */
const AXIS = { format: ',.4~r', tickCount: 6 }

/** What a chart that is not drawn says instead (HTML, shown in the chart's place). */
function chartNote(text: string): string {
  return `<p class="muted chart-note">${text}</p>`
}

/**
 * One line per method series over the ratio axis, with ±stderr bands; the unpruned model anchors
 * ratio 0 of every series that has a value of its own (`pick` null: the row is not drawn, e.g. an
 * incomplete row's average), so a series with none is not in the chart at all.
 */
export async function ratioCurves(model: ModelData, pick: (r: Row) => { value: number; stderr: number | null } | null, yTitle: string, higherIsBetter: boolean, colors: SeriesColors): Promise<string> {
  const values: Record<string, unknown>[] = []
  const base = model.baseline ? pick(model.baseline) : null
  const point = (series: string, ratio: number, v: { value: number; stderr: number | null }) => ({ series, ratio, value: v.value, lo: v.value - (v.stderr ?? 0), hi: v.value + (v.stderr ?? 0) })
  const series: string[] = []
  for (const s of [...new Set(model.rows.filter(r => !r.isBaseline).map(r => r.seriesLabel))].sort()) {
    const own = model.rows.filter(x => x.seriesLabel === s && !(x.ratio === 0 && base)).flatMap(r => {
      const v = pick(r)
      return v ? [point(s, r.ratio, v)] : []
    })
    if (!own.length) continue
    series.push(s)
    if (base) values.push(point(s, 0, base))
    values.push(...own)
  }
  if (!values.length) return ''
  const color = colorEncoding('series', series, colors)
  return renderSvg({
    width: 520, height: 300,
    data: { values },
    resolve: { legend: { color: 'independent' } },
    encoding: { x: { field: 'ratio', type: 'quantitative', title: 'ratio', scale: { domain: [0, 1] }, axis: AXIS } },
    layer: [
      { mark: { type: 'errorband', opacity: 0.15 }, encoding: { y: { field: 'lo', type: 'quantitative', title: yTitle, scale: { zero: false, reverse: !higherIsBetter }, axis: AXIS }, y2: { field: 'hi' }, color: { ...color, legend: null } } },
      { mark: { type: 'line', point: true, strokeWidth: 2 }, encoding: { y: { field: 'value', type: 'quantitative', title: yTitle, axis: AXIS }, color } },
    ],
  })
}

/** Non-dominated rows: no other row is at least as cheap and at least as accurate (and better in one). */
export function paretoFront(points: { x: number; y: number; label: string }[]): { x: number; y: number; label: string }[] {
  const front = points.filter(p => !points.some(q => q !== p && q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y)))
  return front.sort((a, b) => a.x - b.x || b.y - a.y)
}

/**
 * Average accuracy against memory (MiB) or active parameters per token (M) of the complete rows, with
 * the non-dominated front. When every point has the same x (expert pruning keeps top-k experts per
 * token, so its active parameters do not move; or a single complete row) the chart would be a
 * vertical line on one raw tick: a note says so instead.
 */
export async function paretoChart(model: ModelData, axis: 'memory' | 'active', colors: SeriesColors): Promise<string> {
  const points = model.rows.filter(r => r.average !== null).map(r => ({
    x: axis === 'memory' ? r.accounting.memoryBytes / 2 ** 20 : r.accounting.activeParamsPerToken / 1e6,
    y: r.average!, label: r.seriesLabel, ratio: r.ratio,
  }))
  if (!points.length) return ''
  const xs = new Set(points.map(p => p.x))
  if (xs.size === 1) {
    const value = axis === 'memory' ? `${points[0].x.toFixed(1)} MiB of memory` : `${points[0].x.toFixed(2)} M active parameters per token`
    const why = points.length === 1 ? 'only one row has an average' : axis === 'active'
      ? `all ${points.length} rows with an average compute ${value}: the methods here change which experts exist, not how many parameters a token runs through (each token still uses its top-k experts)`
      : `all ${points.length} rows with an average store ${value}`
    return chartNote(`Not drawn: ${why === 'only one row has an average' ? `${why} (${value})` : why}, so there is no trade-off to plot.`)
  }
  const front = paretoFront(points)
  const series = [...new Set(points.map(p => p.label))]
  return renderSvg({
    width: 520, height: 300,
    layer: [
      { data: { values: front }, mark: { type: 'line', color: '#111827', strokeDash: [4, 3], interpolate: 'step-after' }, encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' } } },
      {
        data: { values: points }, mark: { type: 'point', filled: true, size: 70 },
        encoding: {
          x: { field: 'x', type: 'quantitative', title: axis === 'memory' ? 'memory (MiB)' : 'active parameters per token (M)', scale: { zero: false }, axis: AXIS },
          y: { field: 'y', type: 'quantitative', title: 'average accuracy', scale: { zero: false }, axis: AXIS },
          color: colorEncoding('label', series, colors),
          shape: { field: 'ratio', type: 'nominal', title: 'ratio' },
        },
      },
    ],
  })
}

/** Layer × expert map of what a variant did to each expert slot. */
export async function expertMap(row: Row): Promise<string> {
  const values: Record<string, unknown>[] = []
  for (const l of row.accounting.layers) {
    for (let e = 0; e < l.experts; e++) {
      const group = l.groups.find(g => g.includes(e))
      const state = l.removed.includes(e) ? 'removed' : l.novices.includes(e) ? 'novice' : group && group[0] !== e ? `merged into ${group[0]}` : group ? 'merge target' : 'kept'
      values.push({ layer: l.layer, expert: e, state: state.startsWith('merged') ? 'merged' : state, detail: state })
    }
  }
  return renderSvg({
    width: { step: 26 }, height: { step: 22 },
    data: { values },
    mark: { type: 'rect', stroke: 'white' },
    encoding: {
      x: { field: 'expert', type: 'ordinal', title: 'expert' },
      y: { field: 'layer', type: 'ordinal', title: 'layer' },
      color: { field: 'state', type: 'nominal', title: 'expert', scale: { domain: ['kept', 'merge target', 'merged', 'novice', 'removed'], range: ['#16a34a', '#2563eb', '#93c5fd', '#f59e0b', '#d1d5db'] } },
    },
  })
}

/** Share of routed tokens per expert and layer on the calibration set (unpruned model). */
export async function routingHeatmap(load: { layer: number; load: number[] }[]): Promise<string> {
  const values = load.flatMap(l => l.load.map((v, e) => ({ layer: l.layer, expert: e, load: v })))
  return renderSvg({
    width: { step: 26 }, height: { step: 22 },
    data: { values },
    mark: { type: 'rect' },
    encoding: {
      x: { field: 'expert', type: 'ordinal', title: 'expert' },
      y: { field: 'layer', type: 'ordinal', title: 'layer' },
      color: { field: 'load', type: 'quantitative', title: 'tokens routed (share per token)', scale: { scheme: 'blues' } },
    },
  })
}
