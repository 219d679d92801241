// The one module that talks to SQLite (better-sqlite3). WAL journal; every run's metrics, samples and
// status are written in one transaction, so a crash never leaves a half-written result. The schema is
// versioned (PRAGMA user_version) and migrated forward on open.
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { fail } from '../errors.ts'

export interface ModelRow { model_id: string; name: string; path: string; architecture: string; config_json: string; total_params: number; created_at: string }
export interface VariantRow {
  variant_id: string; model_id: string; method: string; params_json: string; ratio: number; achieved_ratio: number | null
  content_hash: string | null; accounting_json: string | null; report_json: string | null; warnings_json: string | null
  calibration_json: string | null; transform_seconds: number | null; status: 'ready' | 'failed'; error: string | null; created_at: string
}
export interface RunRow {
  run_id: number; model_id: string; content_hash: string; task: string; task_version: number; subset: string; scoring_key: string
  harness_version: string; ort_version: string; device: string; status: 'complete' | 'failed'; error: string | null
  docs: number; seconds: number; tokens_processed: number; tokens_per_choice: number; created_at: string
}
export interface MetricRow { run_id: number; metric: string; value: number; stderr: number | null; higher_is_better: number }
export interface SampleRow { run_id: number; doc: number; gold_json: string; lls_json: string; lls_unconditional_json: string | null; greedy_json: string; preds_json: string; counts_json: string | null }

export interface RunKey { model_id: string; content_hash: string; task: string; task_version: number; subset: string; scoring_key: string }

const MIGRATIONS: string[] = [
  // 1: initial schema
  `CREATE TABLE models (
     model_id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL, architecture TEXT NOT NULL,
     config_json TEXT NOT NULL, total_params INTEGER NOT NULL, created_at TEXT NOT NULL);
   CREATE TABLE variants (
     variant_id TEXT PRIMARY KEY, model_id TEXT NOT NULL REFERENCES models(model_id), method TEXT NOT NULL,
     params_json TEXT NOT NULL, ratio REAL NOT NULL, achieved_ratio REAL, content_hash TEXT, accounting_json TEXT,
     report_json TEXT, warnings_json TEXT, calibration_json TEXT, transform_seconds REAL,
     status TEXT NOT NULL CHECK (status IN ('ready', 'failed')), error TEXT, created_at TEXT NOT NULL);
   CREATE INDEX variants_content ON variants(model_id, content_hash);
   CREATE TABLE runs (
     run_id INTEGER PRIMARY KEY AUTOINCREMENT, model_id TEXT NOT NULL REFERENCES models(model_id), content_hash TEXT NOT NULL,
     task TEXT NOT NULL, task_version INTEGER NOT NULL, subset TEXT NOT NULL, scoring_key TEXT NOT NULL,
     harness_version TEXT NOT NULL, ort_version TEXT NOT NULL, device TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('complete', 'failed')), error TEXT, docs INTEGER NOT NULL,
     seconds REAL NOT NULL, tokens_processed INTEGER NOT NULL, tokens_per_choice INTEGER NOT NULL, created_at TEXT NOT NULL,
     UNIQUE (model_id, content_hash, task, task_version, subset, scoring_key));
   CREATE TABLE metrics (
     run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, metric TEXT NOT NULL, value REAL NOT NULL,
     stderr REAL, higher_is_better INTEGER NOT NULL, PRIMARY KEY (run_id, metric));
   CREATE TABLE samples (
     run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, doc INTEGER NOT NULL, gold_json TEXT NOT NULL,
     lls_json TEXT NOT NULL, lls_unconditional_json TEXT, greedy_json TEXT NOT NULL, preds_json TEXT NOT NULL, counts_json TEXT,
     PRIMARY KEY (run_id, doc));
   CREATE TABLE sweeps (
     sweep_id INTEGER PRIMARY KEY AUTOINCREMENT, config_json TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
     cells INTEGER NOT NULL, completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, timings_json TEXT);`,
  // 2: what the report needs to stand alone: method and task descriptions, and calibration telemetry
  `CREATE TABLE method_info (
     name TEXT PRIMARY KEY, family TEXT NOT NULL, description TEXT NOT NULL, params_json TEXT NOT NULL,
     reference_json TEXT, code_hash TEXT NOT NULL);
   CREATE TABLE task_info (
     name TEXT NOT NULL, version INTEGER NOT NULL, kind TEXT NOT NULL, description TEXT NOT NULL,
     metrics_json TEXT NOT NULL, primary_metric TEXT NOT NULL, PRIMARY KEY (name, version));
   CREATE TABLE calibrations (
     model_id TEXT NOT NULL REFERENCES models(model_id), calibration_key TEXT NOT NULL, info_json TEXT NOT NULL,
     routing_load_json TEXT, PRIMARY KEY (model_id, calibration_key));`,
]

export const SCHEMA_VERSION = MIGRATIONS.length

const now = () => new Date().toISOString()

export class ResultsStore {
  readonly db: Database.Database

  constructor(readonly file: string, options: { readonly?: boolean } = {}) {
    if (options.readonly && !fs.existsSync(file)) fail('STORE_FAILED', `Database ${file} does not exist; run a sweep first or pass --db with an existing file.`)
    if (!options.readonly) fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true })
    try {
      this.db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false })
    } catch (e) {
      fail('STORE_FAILED', `Cannot open database ${file}: ${(e as Error).message}`)
    }
    if (!options.readonly) {
      this.db.pragma('journal_mode = WAL')
      this.db.pragma('synchronous = NORMAL')
    }
    this.db.pragma('foreign_keys = ON')
    this.db.pragma('busy_timeout = 10000')
    this.migrate(options.readonly ?? false)
  }

  private migrate(readonly: boolean): void {
    const version = this.db.pragma('user_version', { simple: true }) as number
    if (version > SCHEMA_VERSION) fail('STORE_FAILED', `${this.file} has schema version ${version}, newer than this harness (${SCHEMA_VERSION}); upgrade moe-harness.`)
    if (version === SCHEMA_VERSION) return
    if (readonly) fail('STORE_FAILED', `${this.file} has schema version ${version}; open it once read-write (e.g. moe-harness sweep) to migrate it to ${SCHEMA_VERSION}.`)
    this.db.transaction(() => {
      for (let v = version; v < SCHEMA_VERSION; v++) this.db.exec(MIGRATIONS[v])
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`)
    })()
  }

  close(): void {
    this.db.close()
  }

  // ------------------------------------------------------------------ models and variants

  upsertModel(m: Omit<ModelRow, 'created_at'>): void {
    this.db.prepare(`INSERT INTO models (model_id, name, path, architecture, config_json, total_params, created_at)
      VALUES (@model_id, @name, @path, @architecture, @config_json, @total_params, @created_at)
      ON CONFLICT(model_id) DO UPDATE SET name = excluded.name, path = excluded.path`).run({ ...m, created_at: now() })
  }

  variant(variantId: string): VariantRow | undefined {
    return this.db.prepare('SELECT * FROM variants WHERE variant_id = ?').get(variantId) as VariantRow | undefined
  }

  saveVariant(v: Omit<VariantRow, 'created_at'>): void {
    this.db.prepare(`INSERT OR REPLACE INTO variants (variant_id, model_id, method, params_json, ratio, achieved_ratio, content_hash,
        accounting_json, report_json, warnings_json, calibration_json, transform_seconds, status, error, created_at)
      VALUES (@variant_id, @model_id, @method, @params_json, @ratio, @achieved_ratio, @content_hash, @accounting_json, @report_json,
        @warnings_json, @calibration_json, @transform_seconds, @status, @error, @created_at)`).run({ ...v, created_at: now() })
  }

  // ------------------------------------------------------------------ runs

  run(key: RunKey): RunRow | undefined {
    return this.db.prepare(`SELECT * FROM runs WHERE model_id = @model_id AND content_hash = @content_hash AND task = @task
      AND task_version = @task_version AND subset = @subset AND scoring_key = @scoring_key`).get(key) as RunRow | undefined
  }

  /** Writes a finished run with all its metrics and samples atomically (replacing a failed attempt). */
  saveRun(run: Omit<RunRow, 'run_id' | 'created_at'>, metrics: Omit<MetricRow, 'run_id'>[], samples: Omit<SampleRow, 'run_id'>[]): number {
    return this.db.transaction(() => {
      this.db.prepare(`DELETE FROM runs WHERE model_id = @model_id AND content_hash = @content_hash AND task = @task
        AND task_version = @task_version AND subset = @subset AND scoring_key = @scoring_key`).run(run)
      const info = this.db.prepare(`INSERT INTO runs (model_id, content_hash, task, task_version, subset, scoring_key, harness_version,
          ort_version, device, status, error, docs, seconds, tokens_processed, tokens_per_choice, created_at)
        VALUES (@model_id, @content_hash, @task, @task_version, @subset, @scoring_key, @harness_version, @ort_version, @device,
          @status, @error, @docs, @seconds, @tokens_processed, @tokens_per_choice, @created_at)`).run({ ...run, created_at: now() })
      const runId = Number(info.lastInsertRowid)
      const m = this.db.prepare('INSERT INTO metrics (run_id, metric, value, stderr, higher_is_better) VALUES (?, ?, ?, ?, ?)')
      for (const x of metrics) m.run(runId, x.metric, x.value, x.stderr, x.higher_is_better)
      const s = this.db.prepare(`INSERT INTO samples (run_id, doc, gold_json, lls_json, lls_unconditional_json, greedy_json, preds_json, counts_json)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
      for (const x of samples) s.run(runId, x.doc, x.gold_json, x.lls_json, x.lls_unconditional_json, x.greedy_json, x.preds_json, x.counts_json)
      return runId
    })()
  }

  saveMethodInfo(m: { name: string; family: string; description: string; params_json: string; reference_json: string | null; code_hash: string }): void {
    this.db.prepare(`INSERT OR REPLACE INTO method_info (name, family, description, params_json, reference_json, code_hash)
      VALUES (@name, @family, @description, @params_json, @reference_json, @code_hash)`).run(m)
  }

  saveTaskInfo(t: { name: string; version: number; kind: string; description: string; metrics_json: string; primary_metric: string }): void {
    this.db.prepare(`INSERT OR REPLACE INTO task_info (name, version, kind, description, metrics_json, primary_metric)
      VALUES (@name, @version, @kind, @description, @metrics_json, @primary_metric)`).run(t)
  }

  saveCalibration(c: { model_id: string; calibration_key: string; info_json: string; routing_load_json: string | null }): void {
    this.db.prepare(`INSERT OR REPLACE INTO calibrations (model_id, calibration_key, info_json, routing_load_json)
      VALUES (@model_id, @calibration_key, @info_json, @routing_load_json)`).run(c)
  }

  // ------------------------------------------------------------------ sweeps

  startSweep(configJson: string, cells: number): number {
    return Number(this.db.prepare('INSERT INTO sweeps (config_json, started_at, cells) VALUES (?, ?, ?)').run(configJson, now(), cells).lastInsertRowid)
  }

  finishSweep(id: number, completed: number, failed: number, timings: object): void {
    this.db.prepare('UPDATE sweeps SET finished_at = ?, completed = ?, failed = ?, timings_json = ? WHERE sweep_id = ?').run(now(), completed, failed, JSON.stringify(timings), id)
  }

  // ------------------------------------------------------------------ reading

  all<T>(sql: string, ...params: unknown[]): T[] {
    return this.db.prepare(sql).all(...params) as T[]
  }

  /** Copies every row of another store into this one; identical keys are kept once. */
  mergeFrom(other: string): { runs: number; skipped: number } {
    const src = new ResultsStore(other, { readonly: true })
    let runs = 0, skipped = 0
    try {
      this.db.transaction(() => {
        for (const m of src.all<ModelRow>('SELECT * FROM models')) {
          this.db.prepare(`INSERT OR IGNORE INTO models (model_id, name, path, architecture, config_json, total_params, created_at)
            VALUES (@model_id, @name, @path, @architecture, @config_json, @total_params, @created_at)`).run(m)
        }
        for (const m of src.all<any>('SELECT * FROM method_info')) this.saveMethodInfo(m)
        for (const t of src.all<any>('SELECT * FROM task_info')) this.saveTaskInfo(t)
        for (const c of src.all<any>('SELECT * FROM calibrations')) this.saveCalibration(c)
        for (const v of src.all<VariantRow>('SELECT * FROM variants')) {
          const mine = this.variant(v.variant_id)
          if (!mine || (mine.status === 'failed' && v.status === 'ready')) {
            this.db.prepare(`INSERT OR REPLACE INTO variants (variant_id, model_id, method, params_json, ratio, achieved_ratio, content_hash,
                accounting_json, report_json, warnings_json, calibration_json, transform_seconds, status, error, created_at)
              VALUES (@variant_id, @model_id, @method, @params_json, @ratio, @achieved_ratio, @content_hash, @accounting_json, @report_json,
                @warnings_json, @calibration_json, @transform_seconds, @status, @error, @created_at)`).run(v)
          }
        }
        for (const r of src.all<RunRow>('SELECT * FROM runs')) {
          const mine = this.run(r)
          if (mine && (mine.status === 'complete' || r.status === 'failed')) { skipped++; continue }
          const metrics = src.all<MetricRow>('SELECT * FROM metrics WHERE run_id = ?', r.run_id)
          const samples = src.all<SampleRow>('SELECT * FROM samples WHERE run_id = ?', r.run_id)
          const { run_id: _id, created_at: _c, ...rest } = r
          this.saveRun(rest, metrics, samples)
          runs++
        }
      })()
    } finally {
      src.close()
    }
    return { runs, skipped }
  }
}
