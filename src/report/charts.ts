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
 * One line per method series over the ratio axis, with ±stderr bands; the unpruned model anchors
 * ratio 0 of every series that has a value of its own (`pick` null: the row is not drawn, e.g. an
 * incomplete row's average), so a series with none is not in the chart at all.
 */
export async function ratioCurves(model: ModelData, pick: (r: Row) => { value: number; stderr: number | null } | null, yTitle: string, higherIsBetter = true): Promise<string> {
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
  const color = { field: 'series', type: 'nominal', title: 'method', sort: series }
  return renderSvg({
    width: 520, height: 300,
    data: { values },
    resolve: { legend: { color: 'independent' } },
    encoding: { x: { field: 'ratio', type: 'quantitative', title: 'ratio', scale: { domain: [0, 1] } } },
    layer: [
      { mark: { type: 'errorband', opacity: 0.15 }, encoding: { y: { field: 'lo', type: 'quantitative', title: yTitle, scale: { zero: false, reverse: !higherIsBetter } }, y2: { field: 'hi' }, color: { ...color, legend: null } } },
      { mark: { type: 'line', point: true, strokeWidth: 2 }, encoding: { y: { field: 'value', type: 'quantitative', title: yTitle }, color } },
    ],
  })
}

/** Non-dominated rows: no other row is at least as cheap and at least as accurate (and better in one). */
export function paretoFront(points: { x: number; y: number; label: string }[]): { x: number; y: number; label: string }[] {
  const front = points.filter(p => !points.some(q => q !== p && q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y)))
  return front.sort((a, b) => a.x - b.x || b.y - a.y)
}

export async function paretoChart(model: ModelData, axis: 'memory' | 'active'): Promise<string> {
  const points = model.rows.filter(r => r.average !== null).map(r => ({
    x: axis === 'memory' ? r.accounting.memoryBytes / 2 ** 20 : r.accounting.activeParamsPerToken / 1e6,
    y: r.average!, label: r.seriesLabel, ratio: r.ratio,
  }))
  if (!points.length) return ''
  const front = paretoFront(points)
  const series = [...new Set(points.map(p => p.label))].sort()
  return renderSvg({
    width: 520, height: 300,
    layer: [
      { data: { values: front }, mark: { type: 'line', color: '#111827', strokeDash: [4, 3], interpolate: 'step-after' }, encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' } } },
      {
        data: { values: points }, mark: { type: 'point', filled: true, size: 70 },
        encoding: {
          x: { field: 'x', type: 'quantitative', title: axis === 'memory' ? 'memory (MiB)' : 'active parameters per token (M)', scale: { zero: false } },
          y: { field: 'y', type: 'quantitative', title: 'average accuracy', scale: { zero: false } },
          color: { field: 'label', type: 'nominal', title: 'method', sort: series },
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
