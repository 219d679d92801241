// Flat result rows (one per model × variant × task × metric) for CSV/JSON export and the report.
// Failed work is exported too, so a failure leaves a trace: a failed variant (its method failed or
// was infeasible; no task ran) is one row with task/metric/value null, a failed cell (the variant
// was prepared, scoring the task failed) one row with metric/value null; both carry status 'failed'
// and the error. Every stored failure is read, also one a later success superseded: which failures are
// current is the report's rule (src/report/currentVariants.ts), which the export command applies to these rows.
import type { ResultsStore } from './resultsStore.ts'

export interface ResultRow {
  model: string
  model_id: string
  method: string
  params: string
  ratio: number
  achieved_ratio: number | null
  variant_id: string
  task: string | null
  task_version: number | null
  subset: string | null
  metric: string | null
  value: number | null
  stderr: number | null
  docs: number | null
  /** 'complete' (a metric), or 'failed' (a failed variant or cell; see error). */
  status: string
  /** Why the variant or cell failed (formatted HarnessError); null for results. */
  error: string | null
  /**
   * How the run was scored (null for a failed variant): the execution provider, the onnxruntime version and
   * keys.ts scoringKey (scoring version, max length, device, onnxruntime version). A store merged from CPU
   * and GPU shards holds a cell under two keys (float32 vs half precision): two rows that only these tell apart.
   */
  device: string | null
  ort_version: string | null
  scoring_key: string | null
  /** sha256 of the task data file the run read ('' before schema 5; null for a failed variant). */
  data_sha256: string | null
}

export function readResultRows(store: ResultsStore): ResultRow[] {
  // The sort puts results first, then the failures of the same model/method/params/ratio.
  return store.all<ResultRow>(`
    SELECT * FROM (
      SELECT m.name AS model, m.model_id, v.method, v.params_json AS params, v.ratio, v.achieved_ratio, v.variant_id,
             r.task, r.task_version, r.subset, x.metric, x.value, x.stderr, r.docs, r.status, NULL AS error,
             r.device, r.ort_version, r.scoring_key, r.data_sha256, r.run_id AS k
      FROM variants v
      JOIN models m ON m.model_id = v.model_id
      JOIN runs r ON r.model_id = v.model_id AND r.content_hash = v.content_hash
      JOIN metrics x ON x.run_id = r.run_id
      WHERE v.status = 'ready' AND r.status = 'complete'
      UNION ALL
      SELECT m.name, m.model_id, v.method, v.params_json, v.ratio, v.achieved_ratio, v.variant_id,
             r.task, r.task_version, r.subset, NULL, NULL, NULL, r.docs, 'failed', COALESCE(r.error, 'failed'),
             r.device, r.ort_version, r.scoring_key, r.data_sha256, r.run_id
      FROM variants v
      JOIN models m ON m.model_id = v.model_id
      JOIN runs r ON r.model_id = v.model_id AND r.content_hash = v.content_hash
      WHERE v.status = 'ready' AND r.status = 'failed'
      UNION ALL
      SELECT m.name, m.model_id, v.method, v.params_json, v.ratio, NULL, v.variant_id,
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'failed', COALESCE(v.error, 'failed'), NULL, NULL, NULL, NULL, 0
      FROM variants v
      JOIN models m ON m.model_id = v.model_id
      WHERE v.status = 'failed'
    )
    ORDER BY model, method, params, ratio, status, task, metric, k DESC`).map(({ k: _k, ...row }: ResultRow & { k?: number }) => row)
}
