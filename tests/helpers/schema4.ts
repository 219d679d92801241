// Rewrites a results store as schema 4 wrote it (runs without data_file / data_sha256, a six-column
// key), as schema 5 did (variants without last_used_at) or as schema 6 did (runs without
// session_seconds): a store from an older harness, for migration tests.
import Database from 'better-sqlite3'

/** Runs without session_seconds (schema 7 added it), user_version 6. */
export function rewriteAsSchema6(file: string): void {
  const raw = new Database(file)
  raw.exec('ALTER TABLE runs DROP COLUMN session_seconds')
  raw.pragma('user_version = 6')
  raw.pragma('journal_mode = DELETE')
  raw.close()
}

/** Variants without last_used_at (schema 6 added it), user_version 5. */
export function rewriteAsSchema5(file: string): void {
  rewriteAsSchema6(file)
  const raw = new Database(file)
  raw.exec('ALTER TABLE variants DROP COLUMN last_used_at')
  raw.pragma('user_version = 5')
  raw.pragma('journal_mode = DELETE')
  raw.close()
}

/** `onlyFirstRunPerTask`: keep each task's first run (the six-column key cannot hold two data files' runs). */
export function rewriteAsSchema4(file: string, options: { onlyFirstRunPerTask?: boolean } = {}): void {
  rewriteAsSchema5(file)
  const raw = new Database(file)
  raw.pragma('foreign_keys = OFF') // better-sqlite3 turns them on; dropping runs would cascade
  raw.exec(`CREATE TABLE runs_v4 (
     run_id INTEGER PRIMARY KEY AUTOINCREMENT, model_id TEXT NOT NULL REFERENCES models(model_id), content_hash TEXT NOT NULL,
     task TEXT NOT NULL, task_version INTEGER NOT NULL, subset TEXT NOT NULL, scoring_key TEXT NOT NULL,
     harness_version TEXT NOT NULL, ort_version TEXT NOT NULL, device TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('complete', 'failed')), error TEXT, docs INTEGER NOT NULL,
     seconds REAL NOT NULL, tokens_processed INTEGER NOT NULL, tokens_per_choice INTEGER NOT NULL, created_at TEXT NOT NULL, error_json TEXT,
     UNIQUE (model_id, content_hash, task, task_version, subset, scoring_key));
   INSERT INTO runs_v4 SELECT run_id, model_id, content_hash, task, task_version, subset, scoring_key, harness_version, ort_version, device,
     status, error, docs, seconds, tokens_processed, tokens_per_choice, created_at, error_json FROM runs
     ${options.onlyFirstRunPerTask ? 'WHERE run_id IN (SELECT MIN(run_id) FROM runs GROUP BY task)' : ''};
   DROP TABLE runs;
   ALTER TABLE runs_v4 RENAME TO runs;
   DELETE FROM metrics WHERE run_id NOT IN (SELECT run_id FROM runs);
   DELETE FROM samples WHERE run_id NOT IN (SELECT run_id FROM runs);`)
  raw.pragma('user_version = 4')
  raw.pragma('journal_mode = DELETE')
  raw.close()
}
