// lm-eval style results: a console table (Tasks | Version | Metric | ↑↓ | Value | ± | Stderr) and JSON.
import type { MetricName, TaskDefinition } from '../tasks/defineTask.ts'
import type { MetricValue } from '../tasks/metrics.ts'
import { readableNumber } from '../util/numberFormat.ts'

export interface TaskResultRow {
  task: TaskDefinition
  metrics: Partial<Record<MetricName, MetricValue>>
  docs: number
}

export function formatResultsTable(rows: readonly TaskResultRow[]): string {
  const table: string[][] = [['Tasks', 'Version', 'n', 'Metric', '', 'Value', '', 'Stderr']]
  for (const { task, metrics, docs } of rows) {
    let first = true
    for (const name of task.metrics) {
      const m = metrics[name]
      if (!m) continue
      const primary = name === task.primaryMetric ? '*' : ''
      table.push([first ? task.name : '', first ? String(task.version) : '', first ? String(docs) : '', `${name}${primary}`,
        m.higherIsBetter ? '↑' : '↓', readableNumber(m.value, 4), m.stderr === null ? '' : '±', m.stderr === null ? 'N/A' : readableNumber(m.stderr, 4)])
      first = false
    }
  }
  const widths = table[0].map((_, c) => Math.max(...table.map(r => r[c].length)))
  const line = (r: string[]) => `| ${r.map((cell, c) => (c === 5 || c === 7 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join(' | ')} |`
  const sep = `|${widths.map(w => '-'.repeat(w + 2)).join('|')}|`
  return [line(table[0]), sep, ...table.slice(1).map(line), '* primary metric'].join('\n')
}

export function resultsJson(rows: readonly (TaskResultRow & { total: number })[]) {
  const results: Record<string, Record<string, number | string | null>> = {}
  const versions: Record<string, number> = {}
  const samples: Record<string, { original: number; effective: number }> = {}
  for (const { task, metrics, docs, total } of rows) {
    const r: Record<string, number | string | null> = { primary_metric: task.primaryMetric }
    for (const [name, m] of Object.entries(metrics)) {
      r[name] = m!.value
      r[`${name}_stderr`] = m!.stderr
    }
    results[task.name] = r
    versions[task.name] = task.version
    samples[task.name] = { original: total, effective: docs }
  }
  return { results, versions, 'n-samples': samples }
}
