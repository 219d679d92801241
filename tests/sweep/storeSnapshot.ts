// What must be identical between two stores of the same plan: per cell, every metric and per-sample
// log-likelihood, and each cell stored exactly once.
import assert from 'node:assert/strict'
import { ResultsStore } from '../../src/store/resultsStore.ts'

export interface CellSnapshot { cell: string; status: string; metrics: unknown[]; lls: [number, number[]][] }

/** Every variant × task cell of the store, sorted by model, method, parameters and task. */
export function snapshot(db: string): CellSnapshot[] {
  const s = new ResultsStore(db, { readonly: true })
  try {
    const cells = s.all<any>(`SELECT v.method, v.params_json, m.name AS model, r.task, r.status, r.run_id FROM variants v JOIN models m USING (model_id)
      JOIN runs r ON r.model_id = v.model_id AND r.content_hash = v.content_hash ORDER BY m.name, v.method, v.params_json, r.task`)
    return cells.map(c => ({
      cell: `${c.model}|${c.method}|${c.params_json}|${c.task}`, status: c.status,
      metrics: s.all<any>('SELECT metric, value, stderr FROM metrics WHERE run_id = ? ORDER BY metric', c.run_id),
      lls: s.all<any>('SELECT doc, lls_json FROM samples WHERE run_id = ? ORDER BY doc', c.run_id).map(x => [x.doc, JSON.parse(x.lls_json)] as [number, number[]]),
    }))
  } finally {
    s.close()
  }
}

/** Runs stored more than once for the same key (must be 0), and the number of runs. */
export function runCounts(db: string): { runs: number; duplicates: number; incomplete: number } {
  const s = new ResultsStore(db, { readonly: true })
  try {
    return {
      runs: s.all<any>('SELECT COUNT(*) AS n FROM runs')[0].n,
      duplicates: s.all<any>('SELECT COUNT(*) AS n FROM (SELECT COUNT(*) c FROM runs GROUP BY model_id, content_hash, task, task_version, subset, scoring_key HAVING c > 1)')[0].n,
      incomplete: s.all<any>("SELECT COUNT(*) AS n FROM runs WHERE status != 'complete'")[0].n,
    }
  } finally {
    s.close()
  }
}

export function assertSameResults(a: CellSnapshot[], b: CellSnapshot[]): void {
  assert.deepEqual(b.map(x => x.cell), a.map(x => x.cell))
  assert.deepEqual(b.map(x => x.status), a.map(x => x.status))
  assert.deepEqual(b.map(x => x.metrics), a.map(x => x.metrics))
  assert.deepEqual(b.map(x => x.lls), a.map(x => x.lls))
}
