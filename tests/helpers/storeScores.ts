// A results store's complete cells, read for comparing two sweeps' scores.
import { ResultsStore } from '../../src/store/resultsStore.ts'

/** Each complete cell of a ready variant: its metrics by `key(cell)` (e.g. 'model method ratio task'). */
export function cellScores(file: string, key: (c: { model: string; method: string; ratio: number; task: string }) => string): Record<string, Record<string, number>> {
  const s = new ResultsStore(file, { readonly: true })
  try {
    const rows = s.all<{ model: string; method: string; ratio: number; task: string; metric: string; value: number }>(
      `SELECT m.name AS model, v.method, v.ratio, r.task, x.metric, x.value FROM runs r JOIN models m ON m.model_id = r.model_id
       JOIN variants v ON v.model_id = r.model_id AND v.content_hash = r.content_hash AND v.status = 'ready' JOIN metrics x ON x.run_id = r.run_id
       WHERE r.status = 'complete' ORDER BY 1, 2, 3, 4, 5`)
    const out: Record<string, Record<string, number>> = {}
    for (const r of rows) (out[key(r)] ??= {})[r.metric] = r.value
    return out
  } finally {
    s.close()
  }
}
