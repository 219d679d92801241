// Flat result rows (one per model × variant × task × metric) for CSV/JSON export and the report.
import type { ResultsStore } from './resultsStore.ts'

export interface ResultRow {
  model: string
  model_id: string
  method: string
  params: string
  ratio: number
  achieved_ratio: number | null
  variant_id: string
  task: string
  task_version: number
  subset: string
  metric: string
  value: number
  stderr: number | null
  docs: number
  status: string
}

export function readResultRows(store: ResultsStore): ResultRow[] {
  return store.all<ResultRow>(`
    SELECT m.name AS model, m.model_id, v.method, v.params_json AS params, v.ratio, v.achieved_ratio, v.variant_id,
           r.task, r.task_version, r.subset, x.metric, x.value, x.stderr, r.docs, r.status
    FROM variants v
    JOIN models m ON m.model_id = v.model_id
    JOIN runs r ON r.model_id = v.model_id AND r.content_hash = v.content_hash
    JOIN metrics x ON x.run_id = r.run_id
    WHERE v.status = 'ready'
    ORDER BY m.name, v.method, v.params_json, v.ratio, r.task, x.metric, r.run_id DESC`)
}
