// The one module that talks to SQLite (better-sqlite3). WAL journal; every run's metrics, samples and
// status are written in one transaction, so a crash never leaves a half-written result. The schema is
// versioned (PRAGMA user_version) and migrated forward on open. It is also the one error boundary for
// SQLite: every failure becomes a HarnessError (STORE_CORRUPT, STORE_READONLY, STORE_LOCKED,
// STORE_NOT_HARNESS, STORE_FAILED) naming the file and the fix.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { harnessHome } from '../defaults.ts'
import { fail, HarnessError } from '../errors.ts'
import { runKeyText, type RunKey } from '../identity/keys.ts'
import { fileError } from '../util/fileErrors.ts'
import { shellQuote } from '../util/shellQuote.ts'
import { parseCalibration, sampleCorrectness, type PerplexitySample, type StoredMethod, type StoredModel, type StoredRun, type StoredMetric, type StoredTask, type StoredVariant } from './reads.ts'

export interface ModelRow { model_id: string; name: string; path: string; architecture: string; config_json: string; total_params: number; created_at: string }
export interface VariantRow {
  variant_id: string; model_id: string; method: string; params_json: string; ratio: number; achieved_ratio: number | null
  content_hash: string | null; accounting_json: string | null; report_json: string | null; warnings_json: string | null
  calibration_json: string | null; transform_seconds: number | null; status: 'ready' | 'failed'; error: string | null; created_at: string
  /** The error as HarnessErrorData JSON ({code, message, method?, phase?, task?}); null for rows from before schema 4. */
  error_json: string | null
  /**
   * When a sweep last planned this variant (ISO 8601, UTC): set on save and by markVariantUsed, also
   * when every cell was already complete; a merge keeps the later of two stores' times. Rows from
   * before schema 6 start at their created_at.
   */
  last_used_at: string
}
export interface RunRow {
  run_id: number; model_id: string; content_hash: string; task: string; task_version: number; subset: string; scoring_key: string
  harness_version: string; ort_version: string; device: string; status: 'complete' | 'failed'; error: string | null
  docs: number; seconds: number; tokens_processed: number; tokens_per_choice: number; created_at: string
  /** The error as HarnessErrorData JSON ({code, message, method?, phase?, task?}); null for rows from before schema 4. */
  error_json: string | null
  /** The task data file read (provenance only, not in the key); null for rows from before schema 5. */
  data_file: string | null
  /** sha256 of the task data file's bytes (in the key); '' for rows from before schema 5, which no new key matches. */
  data_sha256: string
  /**
   * Of `seconds`, the wall-clock seconds the pool's workers spent building the variant's onnxruntime
   * session, and starting up when it was their first batch (0 when they had the session already;
   * src/pool/pool.ts openingSeconds); null for rows from before schema 7, and for rows an older
   * harness writes.
   */
  session_seconds: number | null
}
export interface MetricRow { run_id: number; metric: string; value: number; stderr: number | null; higher_is_better: number }
export interface SampleRow { run_id: number; doc: number; gold_json: string; lls_json: string; lls_unconditional_json: string | null; greedy_json: string; preds_json: string; counts_json: string | null }

/** What makes two runs the same result: owned by src/identity/keys.ts. */
export type { RunKey }

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
  // 3: leases, so several sweep processes on one store split the cells instead of scoring them twice
  `CREATE TABLE leases (
     cell_key TEXT PRIMARY KEY, claimed_by TEXT NOT NULL, claimed_at REAL NOT NULL, heartbeat REAL NOT NULL, expires_at REAL NOT NULL);`,
  // 4: a failure's structure (code, message, method, phase, task) beside its one-line `error` text
  `ALTER TABLE runs ADD COLUMN error_json TEXT;
   ALTER TABLE variants ADD COLUMN error_json TEXT;`,
  // 5: the task data file and its sha256 (provenance, issue 12 §1). The sha enters the unique run key, so
  // the table is rebuilt (SQLite cannot alter a UNIQUE constraint; run ids, metrics and samples are
  // kept: migrate() turns foreign keys off around it). Old rows get '' and stay readable, but no new
  // key (always a real sha256) matches them: their data file is unknown, so they are never reused.
  `CREATE TABLE runs_v5 (
     run_id INTEGER PRIMARY KEY AUTOINCREMENT, model_id TEXT NOT NULL REFERENCES models(model_id), content_hash TEXT NOT NULL,
     task TEXT NOT NULL, task_version INTEGER NOT NULL, subset TEXT NOT NULL, scoring_key TEXT NOT NULL,
     harness_version TEXT NOT NULL, ort_version TEXT NOT NULL, device TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('complete', 'failed')), error TEXT, docs INTEGER NOT NULL,
     seconds REAL NOT NULL, tokens_processed INTEGER NOT NULL, tokens_per_choice INTEGER NOT NULL, created_at TEXT NOT NULL,
     error_json TEXT, data_file TEXT, data_sha256 TEXT NOT NULL DEFAULT '',
     UNIQUE (model_id, content_hash, task, task_version, subset, scoring_key, data_sha256));
   INSERT INTO runs_v5 (run_id, model_id, content_hash, task, task_version, subset, scoring_key, harness_version, ort_version, device,
       status, error, docs, seconds, tokens_processed, tokens_per_choice, created_at, error_json)
     SELECT run_id, model_id, content_hash, task, task_version, subset, scoring_key, harness_version, ort_version, device,
       status, error, docs, seconds, tokens_processed, tokens_per_choice, created_at, error_json FROM runs;
   DROP TABLE runs;
   ALTER TABLE runs_v5 RENAME TO runs;
   DELETE FROM leases;`,
  // 6: when a sweep last planned each variant, so the leaderboard's current variant of a row is the one
  // the code produces now: reverting a method edit reuses the older variant's folder and runs, and
  // records nothing else. Old rows start at their creation time, so their order does not change.
  `ALTER TABLE variants ADD COLUMN last_used_at TEXT NOT NULL DEFAULT '';
   UPDATE variants SET last_used_at = created_at;`,
  // 7: the part of a run's seconds spent opening the variant's session, so the leaderboard's tokens/s
  // is a scoring throughput: the first cell of a variant paid for the build, the cells that reused
  // the session did not. Old rows stay NULL (unknown) and keep their wall-time throughput.
  `ALTER TABLE runs ADD COLUMN session_seconds REAL;`,
]

export const SCHEMA_VERSION = MIGRATIONS.length

/**
 * `PRAGMA application_id` of every harness database: the bytes 'MoEH' (0x4D6F4548), stored at offset 68
 * of the SQLite header (https://www.sqlite.org/fileformat.html#application_id). A database with another
 * id, or with tables that are not ours, is refused and never migrated; a database written before the
 * id existed (id 0, our tables, user_version >= 1) is recognised by its schema and stamped when opened
 * writable.
 */
export const APPLICATION_ID = 0x4d6f4548

/** Tables every harness schema version has: how a database from before APPLICATION_ID is recognised. */
const HARNESS_TABLES = ['models', 'variants', 'runs', 'metrics', 'samples', 'sweeps']
const SQLITE_MAGIC = 'SQLite format 3\0'
const BUSY_TIMEOUT_MS = 10_000
/** Writable opens run quick_check on databases up to this size (about 1 s), so opening a huge store stays fast. */
const QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024

const now = () => new Date().toISOString()
/**
 * When a variant was last used: its last_used_at, or its created_at when that is '' (the column's
 * default: a row written by an older harness's sweep that opened the store before this one migrated
 * it to schema 6, and goes on writing the columns it knows).
 */
const lastUsedOf = (v: Pick<VariantRow, 'last_used_at' | 'created_at'>) => v.last_used_at || v.created_at
/** A run key's fields alone (a row, or a key from before data_sha256, is narrowed to exactly the key). */
const keyOf = (k: RunKey): RunKey => ({ model_id: k.model_id, content_hash: k.content_hash, task: k.task, task_version: k.task_version, subset: k.subset, scoring_key: k.scoring_key, data_sha256: k.data_sha256 })
/** A lease's cell: the run key, so identical variants (e.g. every method at ratio 0) share one lease. */
const leaseKey = runKeyText

export type DatabaseKind =
  | { kind: 'missing' }
  | { kind: 'empty' }
  | { kind: 'harness'; schemaVersion: number; stamped: boolean }
  | { kind: 'foreign'; reason: string }
  | { kind: 'unreadable'; error: HarnessError }

export class ResultsStore {
  readonly db!: Database.Database
  readonly readonly: boolean
  /** How the command line names this file, for the fix in error messages: '--db', merge's '--out', 'a merge input'. */
  readonly flag: string
  /** The temp folder of a large older-schema store migrated for reading (removed on close). */
  private temporaryCopy: string | undefined

  /**
   * Opens (read-write: creates) a results database. Read-only opens never write anything: not the
   * file, not a -wal/-shm beside it, so `report` and `export` work from read-only folders.
   * Errors (all HarnessErrors naming `file`): STORE_NOT_HARNESS (not SQLite, or another
   * application's database), STORE_CORRUPT, STORE_READONLY, STORE_LOCKED, STORE_FAILED (missing,
   * a folder, newer schema, I/O).
   */
  constructor(readonly file: string, options: { readonly?: boolean; flag?: string; inMemoryMigrationMaxBytes?: number; createFolder?: boolean } = {}) {
    this.readonly = options.readonly ?? false
    this.flag = options.flag ?? '--db'
    const abs = path.resolve(file)
    const existed = checkDatabasePath(file, abs, this.readonly, this.flag, true, options.createFolder)
    try {
      ;(this as { db: Database.Database }).db = this.readonly ? openReadonly(file, abs) : new Database(abs, { fileMustExist: existed })
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
      // Identify before changing anything: a foreign database must stay byte-identical.
      const kind = identify(this.db, file)
      if (kind.kind === 'foreign') fail('STORE_NOT_HARNESS', notHarnessMessage(file, kind.reason, this.flag, this.readonly))
      if (kind.kind === 'empty' && this.readonly) fail('STORE_FAILED', `${file} is an empty database with no results; run a sweep with --db ${file} first, or pass the database a sweep wrote.`)
      // Checked before the journal mode is touched: a newer harness's database stays as it was.
      if (kind.kind === 'harness' && kind.schemaVersion > SCHEMA_VERSION) fail('STORE_FAILED', `${file} has schema version ${kind.schemaVersion}, newer than this harness (${SCHEMA_VERSION}); upgrade moe-harness.`)
      // A damaged database is refused before anything is written into it (and before a sweep's work).
      if (!this.readonly && kind.kind === 'harness' && fs.statSync(abs).size <= QUICK_CHECK_MAX_BYTES) checkIntact(this.db, file, 'nothing was written', `Restore it from a backup or pass ${this.flag} with a new file`)
      if (!this.readonly) {
        this.db.pragma('journal_mode = WAL')
        this.db.pragma('synchronous = NORMAL')
      }
      this.db.pragma('foreign_keys = ON')
      this.migrate(this.readonly, options.inMemoryMigrationMaxBytes ?? MIGRATE_IN_MEMORY_MAX_BYTES)
      if (!this.readonly && this.db.pragma('application_id', { simple: true }) !== APPLICATION_ID) this.db.pragma(`application_id = ${APPLICATION_ID}`)
    } catch (e) {
      try { this.db?.close() } catch { /* already failing */ }
      if (this.temporaryCopy) fs.rmSync(this.temporaryCopy, { recursive: true, force: true })
      if (!existed && !this.readonly) removeCreated(abs)
      throw storeError(e, file, this.readonly, this.flag)
    }
  }

  private migrate(readonly: boolean, inMemoryMax: number): void {
    const version = this.db.pragma('user_version', { simple: true }) as number
    if (version > SCHEMA_VERSION) fail('STORE_FAILED', `${this.file} has schema version ${version}, newer than this harness (${SCHEMA_VERSION}); upgrade moe-harness.`)
    if (version === SCHEMA_VERSION) return
    if (readonly) {
      // Reading never writes the file: an older store is migrated in a private in-memory copy, so
      // report, export and merge read it as it is (a read-only file, a colleague's shard, an archive).
      const bytes = fs.statSync(path.resolve(this.file)).size
      let copy: Database.Database
      if (bytes <= inMemoryMax) {
        copy = new Database(this.db.serialize())
      } else {
        // Too large for one buffer: a copy in the temp folder, removed on close.
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-harness-migrate-'))
        const file = path.join(dir, 'store.sqlite')
        try {
          this.db.exec(`VACUUM INTO '${file.replaceAll("'", "''")}'`)
        } catch (e) {
          fs.rmSync(dir, { recursive: true, force: true })
          throw fileError(e, dir, `copy ${this.file} (schema ${version}) into the temp folder to migrate it for reading (free space there, or set TMPDIR to a folder with room)`, 'STORE_FAILED')
        }
        copy = new Database(file)
        this.temporaryCopy = dir
      }
      this.db.close()
      ;(this as { db: Database.Database }).db = copy
      runMigrations(copy, this.file)
      copy.pragma('query_only = ON')
      return
    }
    // IMMEDIATE, and the version read again inside: cooperating sweeps may open a new store at once.
    runMigrations(this.db, this.file)
  }

  /**
   * Closes the database. A writer that is the last connection switches the file back to a rollback
   * journal (checkpointing the WAL), so a finished database is one self-contained file that readers
   * open without creating -wal/-shm files; with other connections open it stays in WAL mode.
   */
  close(): void {
    if (!this.db?.open) return
    if (!this.readonly) {
      try {
        this.db.pragma('busy_timeout = 0')
        this.db.pragma('journal_mode = DELETE')
      } catch { /* another connection is open: it stays in WAL mode, which is just as correct */ }
    }
    this.db.close()
    if (this.temporaryCopy) fs.rmSync(this.temporaryCopy, { recursive: true, force: true })
  }

  /** Runs a database operation behind the error boundary (corrupt pages surface only when read). */
  guard<T>(fn: () => T): T {
    try {
      return fn()
    } catch (e) {
      throw storeError(e, this.file, this.readonly, this.flag)
    }
  }

  // ------------------------------------------------------------------ models and variants

  upsertModel(m: Omit<ModelRow, 'created_at'>): void {
    this.guard(() => {
      this.db.prepare(`INSERT INTO models (model_id, name, path, architecture, config_json, total_params, created_at)
        VALUES (@model_id, @name, @path, @architecture, @config_json, @total_params, @created_at)
        ON CONFLICT(model_id) DO UPDATE SET name = excluded.name, path = excluded.path`).run({ ...m, created_at: now() })
    })
  }

  variant(variantId: string): VariantRow | undefined {
    return this.guard(() => this.db.prepare('SELECT * FROM variants WHERE variant_id = ?').get(variantId) as VariantRow | undefined)
  }

  /** Records a variant (replacing its row), made and last used now. */
  saveVariant(v: Omit<VariantRow, 'created_at' | 'error_json' | 'last_used_at'> & { error_json?: string | null }): void {
    this.guard(() => {
      const t = now()
      this.db.prepare(`INSERT OR REPLACE INTO variants (variant_id, model_id, method, params_json, ratio, achieved_ratio, content_hash,
          accounting_json, report_json, warnings_json, calibration_json, transform_seconds, status, error, error_json, created_at, last_used_at)
        VALUES (@variant_id, @model_id, @method, @params_json, @ratio, @achieved_ratio, @content_hash, @accounting_json, @report_json,
          @warnings_json, @calibration_json, @transform_seconds, @status, @error, @error_json, @created_at, @last_used_at)`).run({ error_json: null, ...v, created_at: t, last_used_at: t })
    })
  }

  /**
   * Records that a sweep planned the stored variant `variantId` now (its folder and runs reused, nothing
   * else written): the leaderboard's current variant of a row is the one used last. Never moves the
   * time back (another machine's clock, a merge).
   */
  markVariantUsed(variantId: string): void {
    this.guard(() => {
      this.db.prepare('UPDATE variants SET last_used_at = MAX(last_used_at, ?) WHERE variant_id = ?').run(now(), variantId)
    })
  }

  // ------------------------------------------------------------------ runs

  run(key: RunKey): RunRow | undefined {
    return this.guard(() => {
      return this.db.prepare(`SELECT * FROM runs WHERE model_id = @model_id AND content_hash = @content_hash AND task = @task
        AND task_version = @task_version AND subset = @subset AND scoring_key = @scoring_key AND data_sha256 = @data_sha256`).get(keyOf(key)) as RunRow | undefined
    })
  }

  /** Writes a finished run with all its metrics and samples atomically (replacing a failed attempt). */
  saveRun(run: Omit<RunRow, 'run_id' | 'created_at' | 'error_json' | 'data_file' | 'data_sha256' | 'session_seconds'> & { error_json?: string | null; data_file?: string | null; data_sha256?: string; session_seconds?: number | null }, metrics: Omit<MetricRow, 'run_id'>[], samples: Omit<SampleRow, 'run_id'>[]): number {
    return this.guard(() => {
      return this.db.transaction(() => {
        const row = { error_json: null, data_file: null, data_sha256: '', session_seconds: null, ...run, created_at: now() }
        this.db.prepare(`DELETE FROM runs WHERE model_id = @model_id AND content_hash = @content_hash AND task = @task
          AND task_version = @task_version AND subset = @subset AND scoring_key = @scoring_key AND data_sha256 = @data_sha256`).run(keyOf(row))
        const info = this.db.prepare(`INSERT INTO runs (model_id, content_hash, task, task_version, subset, scoring_key, data_sha256, data_file,
            harness_version, ort_version, device, status, error, error_json, docs, seconds, session_seconds, tokens_processed, tokens_per_choice, created_at)
          VALUES (@model_id, @content_hash, @task, @task_version, @subset, @scoring_key, @data_sha256, @data_file, @harness_version,
            @ort_version, @device, @status, @error, @error_json, @docs, @seconds, @session_seconds, @tokens_processed, @tokens_per_choice, @created_at)`).run(row)
        const runId = Number(info.lastInsertRowid)
        const m = this.db.prepare('INSERT INTO metrics (run_id, metric, value, stderr, higher_is_better) VALUES (?, ?, ?, ?, ?)')
        for (const x of metrics) m.run(runId, x.metric, x.value, x.stderr, x.higher_is_better)
        const s = this.db.prepare(`INSERT INTO samples (run_id, doc, gold_json, lls_json, lls_unconditional_json, greedy_json, preds_json, counts_json)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
        for (const x of samples) s.run(runId, x.doc, x.gold_json, x.lls_json, x.lls_unconditional_json, x.greedy_json, x.preds_json, x.counts_json)
        return runId
      })()
    })
  }

  saveMethodInfo(m: { name: string; family: string; description: string; params_json: string; reference_json: string | null; code_hash: string }): void {
    this.guard(() => {
      this.db.prepare(`INSERT OR REPLACE INTO method_info (name, family, description, params_json, reference_json, code_hash)
        VALUES (@name, @family, @description, @params_json, @reference_json, @code_hash)`).run(m)
    })
  }

  saveTaskInfo(t: { name: string; version: number; kind: string; description: string; metrics_json: string; primary_metric: string }): void {
    this.guard(() => {
      this.db.prepare(`INSERT OR REPLACE INTO task_info (name, version, kind, description, metrics_json, primary_metric)
        VALUES (@name, @version, @kind, @description, @metrics_json, @primary_metric)`).run(t)
    })
  }

  saveCalibration(c: { model_id: string; calibration_key: string; info_json: string; routing_load_json: string | null }): void {
    this.guard(() => {
      this.db.prepare(`INSERT OR REPLACE INTO calibrations (model_id, calibration_key, info_json, routing_load_json)
        VALUES (@model_id, @calibration_key, @info_json, @routing_load_json)`).run(c)
    })
  }

  // ------------------------------------------------------------------ sweeps

  startSweep(configJson: string, cells: number): number {
    return this.guard(() => Number(this.db.prepare('INSERT INTO sweeps (config_json, started_at, cells) VALUES (?, ?, ?)').run(configJson, now(), cells).lastInsertRowid))
  }

  finishSweep(id: number, completed: number, failed: number, timings: object): void {
    this.guard(() => {
      this.db.prepare('UPDATE sweeps SET finished_at = ?, completed = ?, failed = ?, timings_json = ? WHERE sweep_id = ?').run(now(), completed, failed, JSON.stringify(timings), id)
    })
  }

  // ------------------------------------------------------------------ leases

  /**
   * Claims a cell for `owner` until `now + ttlMs` (times in ms since the epoch, one machine's clock).
   * One IMMEDIATE transaction, so two processes can never both win: returns 'complete' when the run is
   * already stored complete (or failed since `retryFailedBefore`, i.e. by a cooperating process of
   * this sweep), 'busy' while another owner's lease is live, else 'claimed'. An expired lease (its
   * owner crashed or was killed) is taken over, and so is a live one when `holderIsGone(holder)` says
   * its owner no longer exists.
   */
  claimCell(key: RunKey, owner: string, ttlMs: number, retryFailedBefore: string, holderIsGone: (holder: string) => boolean = () => false): 'claimed' | 'busy' | 'complete' {
    return this.guard(() => {
      const cell = leaseKey(key)
      return this.db.transaction((): 'claimed' | 'busy' | 'complete' => {
        const run = this.run(key)
        if (run && (run.status === 'complete' || run.created_at >= retryFailedBefore)) return 'complete'
        const t = Date.now()
        const lease = this.db.prepare('SELECT claimed_by, expires_at FROM leases WHERE cell_key = ?').get(cell) as { claimed_by: string; expires_at: number } | undefined
        if (lease && lease.claimed_by !== owner && lease.expires_at > t && !holderIsGone(lease.claimed_by)) return 'busy'
        this.db.prepare(`INSERT INTO leases (cell_key, claimed_by, claimed_at, heartbeat, expires_at) VALUES (?, ?, ?, ?, ?)
          ON CONFLICT(cell_key) DO UPDATE SET claimed_by = excluded.claimed_by, claimed_at = excluded.claimed_at,
            heartbeat = excluded.heartbeat, expires_at = excluded.expires_at`).run(cell, owner, t, t, t + ttlMs)
        return 'claimed'
      }).immediate()
    })
  }

  /** Extends every lease `owner` holds to `now + ttlMs`; returns how many it holds. */
  heartbeatLeases(owner: string, ttlMs: number): number {
    return this.guard(() => {
      const t = Date.now()
      return this.db.prepare('UPDATE leases SET heartbeat = ?, expires_at = ? WHERE claimed_by = ?').run(t, t + ttlMs, owner).changes
    })
  }

  /** Gives a cell back (after its run is stored, or when the sweep stops before scoring it). */
  releaseCell(key: RunKey, owner: string): void {
    this.guard(() => {
      this.db.prepare('DELETE FROM leases WHERE cell_key = ? AND claimed_by = ?').run(leaseKey(key), owner)
    })
  }

  /**
   * Leases not yet expired: the model id and content hash of each claimed cell's run key, and its
   * holder (host:pid:random). `moe-harness cache prune` keeps the variant folders they name.
   */
  liveLeases(): { modelId: string; contentHash: string; holder: string }[] {
    return this.all<{ cell_key: string; claimed_by: string }>('SELECT cell_key, claimed_by FROM leases WHERE expires_at > ?', Date.now())
      .map(l => {
        const [modelId, contentHash] = JSON.parse(l.cell_key) as [string, string]
        return { modelId, contentHash, holder: l.claimed_by }
      })
  }

  // ------------------------------------------------------------------ reading

  /** Raw query behind the error boundary: for this file and for tests that inspect tables; other modules use the typed reads below. */
  all<T>(sql: string, ...params: unknown[]): T[] {
    return this.guard(() => this.db.prepare(sql).all(...params) as T[])
  }

  // ------------------------------------------------------------------ typed reads (domain objects, src/store/reads.ts)

  /** Every method the sweeps described, by name. */
  storedMethods(): StoredMethod[] {
    return this.all<{ name: string; family: string; description: string; params_json: string; reference_json: string | null }>('SELECT * FROM method_info ORDER BY name')
      .map(m => ({ name: m.name, family: m.family, description: m.description, params: JSON.parse(m.params_json), reference: m.reference_json ? JSON.parse(m.reference_json) : null }))
  }

  /** Every task version the sweeps described, by name then version. */
  storedTasks(): StoredTask[] {
    return this.all<{ name: string; version: number; kind: string; description: string; metrics_json: string; primary_metric: string }>('SELECT * FROM task_info ORDER BY name, version')
      .map(t => ({ name: t.name, version: t.version, kind: t.kind, description: t.description, metrics: JSON.parse(t.metrics_json), primaryMetric: t.primary_metric }))
  }

  /** Every model, by name then id. */
  storedModels(): StoredModel[] {
    return this.all<ModelRow>('SELECT * FROM models ORDER BY name, model_id')
      .map(m => ({ id: m.model_id, name: m.name, path: m.path, architecture: m.architecture, config: JSON.parse(m.config_json), totalParams: m.total_params }))
  }

  /** A model's variants, ready and failed, by method, parameters (JSON text), ratio, id. */
  storedVariants(modelId: string): StoredVariant[] {
    return this.all<VariantRow>('SELECT * FROM variants WHERE model_id = ? ORDER BY method, params_json, ratio, variant_id', modelId).map((v): StoredVariant => {
      const common = { variantId: v.variant_id, method: v.method, paramsJson: v.params_json, ratio: Number(v.ratio), createdAt: v.created_at, lastUsedAt: lastUsedOf(v) }
      if (v.status !== 'ready') return { status: 'failed', ...common, error: v.error }
      return {
        status: 'ready', ...common, params: JSON.parse(v.params_json), achievedRatio: Number(v.achieved_ratio ?? 0), contentHash: v.content_hash ?? '',
        accounting: JSON.parse(v.accounting_json ?? 'null'), warnings: JSON.parse(v.warnings_json ?? '[]'),
        notes: (JSON.parse(v.report_json ?? '{}') as { notes?: Record<string, unknown> }).notes ?? {}, calibration: parseCalibration(v.calibration_json),
      }
    })
  }

  /**
   * A model's failed cells: failed runs whose variant and task have no complete run (a later success
   * supersedes them), by task then run id; the report lists them with their error.
   */
  failedRuns(modelId: string): { contentHash: string; task: string; error: string }[] {
    return this.all<RunRow>(`SELECT * FROM runs r WHERE model_id = ? AND status = 'failed'
      AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.model_id = r.model_id AND c.content_hash = r.content_hash AND c.task = r.task AND c.status = 'complete')
      ORDER BY task, run_id`, modelId).map(r => ({ contentHash: r.content_hash, task: r.task, error: r.error ?? 'failed' }))
  }

  /** A model's complete runs (failed attempts are not results), by task then run id. */
  completeRuns(modelId: string): StoredRun[] {
    return this.all<RunRow>(`SELECT * FROM runs WHERE model_id = ? AND status = 'complete' ORDER BY task, run_id`, modelId)
      .map(r => ({ runId: r.run_id, contentHash: r.content_hash, task: r.task, taskVersion: r.task_version, subset: r.subset, dataSha256: r.data_sha256, docs: r.docs, seconds: r.seconds, sessionSeconds: r.session_seconds ?? null, tokensProcessed: r.tokens_processed, scoringKey: r.scoring_key, device: r.device, ortVersion: r.ort_version }))
  }

  /** One metric of a run, or undefined when the run did not compute it. */
  runMetric(runId: number, metric: string): StoredMetric | undefined {
    const m = this.all<MetricRow>('SELECT * FROM metrics WHERE run_id = ? AND metric = ?', runId, metric)[0]
    return m && { value: m.value, stderr: m.stderr, higherIsBetter: m.higher_is_better === 1 }
  }

  /**
   * Whether higher values of `metric` are better, as the evaluations that wrote it stored it (any
   * complete run of task `task` version `version`); undefined when no such run stored that metric.
   */
  metricHigherIsBetter(task: string, version: number, metric: string): boolean | undefined {
    const m = this.all<{ higher_is_better: number }>(`SELECT m.higher_is_better FROM metrics m JOIN runs r ON r.run_id = m.run_id
      WHERE r.task = ? AND r.task_version = ? AND r.status = 'complete' AND m.metric = ? ORDER BY m.run_id LIMIT 1`, task, version, metric)[0]
    return m && m.higher_is_better === 1
  }

  /**
   * Per-document correctness (1/0, by document index) of a run under accuracy metric `metric` of a
   * task of kind `kind`, derived by sampleCorrectness() (src/store/reads.ts: the one place, since the
   * samples table stores predictions, not correctness); null when `metric` is not an accuracy.
   */
  sampleCorrectness(runId: number, kind: string, metric: string): number[] | null {
    const rows = this.all<SampleRow>('SELECT * FROM samples WHERE run_id = ? ORDER BY doc', runId)
    const out: number[] = []
    for (const row of rows) {
      const c = sampleCorrectness(kind, metric, row)
      if (c === null) return null
      out.push(c)
    }
    return out
  }

  /** A rolling run's documents (by index) with their word / byte counts; null when the run stored no counts. */
  perplexitySamples(runId: number): PerplexitySample[] | null {
    const rows = this.all<SampleRow>('SELECT * FROM samples WHERE run_id = ? ORDER BY doc', runId)
    if (!rows[0]?.counts_json) return null
    return rows.map(row => {
      const counts = JSON.parse(row.counts_json ?? 'null') as { words: number; bytes: number } | null
      return { ll: (JSON.parse(row.lls_json) as number[])[0], words: counts?.words ?? 0, bytes: counts?.bytes ?? 0 }
    })
  }

  /** The unpruned model's routing load per layer (share of tokens per expert) from its first calibration that recorded one. */
  routingLoad(modelId: string): { layer: number; load: number[] }[] | null {
    const c = this.all<{ routing_load_json: string }>('SELECT routing_load_json FROM calibrations WHERE model_id = ? AND routing_load_json IS NOT NULL ORDER BY calibration_key', modelId)[0]
    return c ? JSON.parse(c.routing_load_json) : null
  }

  /**
   * The most recent sweep's record: `config` is what the sweep stored as its config (parsed JSON; the
   * CLI stores `{ config, shard }`), `finishedAt` null while it runs or when it was killed; undefined
   * when no sweep wrote this store.
   */
  latestSweep(): { config: unknown; startedAt: string; finishedAt: string | null; cells: number; completed: number; failed: number } | undefined {
    const s = this.all<{ config_json: string; started_at: string; finished_at: string | null; cells: number; completed: number; failed: number }>('SELECT * FROM sweeps ORDER BY sweep_id DESC LIMIT 1')[0]
    return s && { config: JSON.parse(s.config_json), startedAt: s.started_at, finishedAt: s.finished_at, cells: s.cells, completed: s.completed, failed: s.failed }
  }

  /** How many sweeps wrote this store and when the last one finished (ISO time; null when none finished). */
  sweepSummary(): { sweeps: number; lastSweep: string | null } {
    const s = this.all<{ n: number; last: string | null }>('SELECT COUNT(*) AS n, MAX(finished_at) AS last FROM sweeps')[0]
    return { sweeps: s?.n ?? 0, lastSweep: s?.last ?? null }
  }

  /** Copies every row of another store into this one; identical keys are kept once, a variant with the later of its two last_used_at. */
  mergeFrom(other: string): { runs: number; skipped: number } {
    const src = new ResultsStore(other, { readonly: true, flag: 'a merge input' })
    let runs = 0, skipped = 0
    try {
      this.guard(() => this.db.transaction(() => {
        for (const m of src.all<ModelRow>('SELECT * FROM models')) {
          this.db.prepare(`INSERT OR IGNORE INTO models (model_id, name, path, architecture, config_json, total_params, created_at)
            VALUES (@model_id, @name, @path, @architecture, @config_json, @total_params, @created_at)`).run(m)
        }
        for (const m of src.all<any>('SELECT * FROM method_info')) this.saveMethodInfo(m)
        for (const t of src.all<any>('SELECT * FROM task_info')) this.saveTaskInfo(t)
        for (const c of src.all<any>('SELECT * FROM calibrations')) this.saveCalibration(c)
        for (const v of src.all<VariantRow>('SELECT * FROM variants')) {
          const mine = this.variant(v.variant_id)
          // Used last on whichever machine used it last: the later time of the two stores.
          const lastUsed = mine && lastUsedOf(mine) > lastUsedOf(v) ? lastUsedOf(mine) : lastUsedOf(v)
          if (!mine || (mine.status === 'failed' && v.status === 'ready')) {
            this.db.prepare(`INSERT OR REPLACE INTO variants (variant_id, model_id, method, params_json, ratio, achieved_ratio, content_hash,
                accounting_json, report_json, warnings_json, calibration_json, transform_seconds, status, error, error_json, created_at, last_used_at)
              VALUES (@variant_id, @model_id, @method, @params_json, @ratio, @achieved_ratio, @content_hash, @accounting_json, @report_json,
                @warnings_json, @calibration_json, @transform_seconds, @status, @error, @error_json, @created_at, @last_used_at)`).run({ ...v, last_used_at: lastUsed })
          } else if (lastUsed !== mine.last_used_at) {
            this.db.prepare('UPDATE variants SET last_used_at = ? WHERE variant_id = ?').run(lastUsed, v.variant_id)
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
      })())
    } finally {
      src.close()
    }
    return { runs, skipped }
  }
}

// ------------------------------------------------------------------ the error boundary

/** Whether `file` is a harness results database (stamped, or from before the stamp); never throws. */
export function isHarnessDatabase(file: string): boolean {
  return describeDatabase(file).kind === 'harness'
}

/**
 * What is at `file`, read without writing anything: 'missing' (nothing there), 'empty' (a 0-byte or
 * table-less SQLite file), 'harness' (ours), 'foreign' (another kind of file or another application's
 * database, with the reason) or 'unreadable' (corrupt, a folder, permission denied: the HarnessError
 * that opening it would raise). The CLI uses it to decide whether an existing output may be replaced.
 */
export function describeDatabase(file: string): DatabaseKind {
  if (!fs.existsSync(file)) return { kind: 'missing' }
  const abs = path.resolve(file)
  let db: Database.Database | undefined
  try {
    checkDatabasePath(file, abs, true, '--db')
    if (fs.statSync(abs).size === 0) return { kind: 'empty' }
    db = openReadonly(file, abs)
    const kind = identify(db, file)
    if (kind.kind === 'harness' && kind.schemaVersion > SCHEMA_VERSION) {
      return { kind: 'unreadable', error: new HarnessError('STORE_FAILED', `${file} has schema version ${kind.schemaVersion}, newer than this harness (${SCHEMA_VERSION}); upgrade moe-harness.`) }
    }
    return kind
  } catch (e) {
    const error = storeError(e, file, true)
    return error.code === 'STORE_NOT_HARNESS' ? { kind: 'foreign', reason: error.message } : { kind: 'unreadable', error }
  } finally {
    try { db?.close() } catch { /* read-only: nothing to flush */ }
  }
}

/**
 * Checks every input of `merge` before the output is created: each exists, is a harness database of a
 * schema this harness reads, and passes SQLite's `quick_check` (corrupt pages, truncation). Throws the
 * first problem as a HarnessError naming the file; `out` (when given and existing) must be ours too.
 */
export function validateMergeInputs(inputs: readonly string[], out?: string): void {
  if (inputs.length === 0) fail('INVALID_ARGUMENT', 'merge needs at least one input database.')
  for (const file of inputs) {
    if (!fs.existsSync(file)) fail('STORE_FAILED', `Database ${file} does not exist; check the path of every merge input.`)
    let store: ResultsStore
    try {
      store = new ResultsStore(file, { readonly: true, flag: 'a merge input' })
    } catch (e) {
      // A merge input's fix for corruption is to leave it out.
      if (e instanceof HarnessError && e.code === 'STORE_CORRUPT') fail('STORE_CORRUPT', `${file} is damaged (SQLite cannot read it: truncated or overwritten); nothing was merged. Restore it from a backup, or leave it out of the merge; \`sqlite3 ${file} .recover\` can salvage rows.`)
      throw e
    }
    try {
      store.guard(() => checkIntact(store.db, file, 'nothing was merged', 'Restore it from a backup, or leave it out of the merge'))
    } finally {
      store.close()
    }
  }
  if (out !== undefined && fs.existsSync(out)) {
    const kind = describeDatabase(out)
    if (kind.kind === 'foreign') fail('STORE_NOT_HARNESS', kind.reason)
    if (kind.kind === 'unreadable') throw kind.error
  }
}

/** Stores up to this size are migrated in memory when opened read-only (SQLite's serialize copies the whole file). */
const MIGRATE_IN_MEMORY_MAX_BYTES = 2 ** 31

/**
 * Brings `db` from its schema version to SCHEMA_VERSION in one IMMEDIATE transaction, the version read
 * again inside (cooperating sweeps may open a new store at once). Foreign keys are off while migrating
 * (a pragma that is ignored inside a transaction): a rebuilt table (migration 5) is dropped and
 * replaced, which must not cascade into metrics and samples.
 */
function runMigrations(db: Database.Database, file: string): void {
  db.pragma('foreign_keys = OFF')
  try {
    db.transaction(() => {
      const current = db.pragma('user_version', { simple: true }) as number
      for (let v = current; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v])
      if (current < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`)
      const broken = db.pragma('foreign_key_check') as unknown[]
      if (broken.length) fail('STORE_CORRUPT', `${file}: migrating to schema ${SCHEMA_VERSION} found ${broken.length} rows whose references are broken; nothing was changed. Restore the store from a backup or start a new one.`)
    }).immediate()
  } finally {
    db.pragma('foreign_keys = ON')
  }
}

/** SQLite's `quick_check` (page structure, truncation); a problem is STORE_CORRUPT naming the file. */
function checkIntact(db: Database.Database, file: string, consequence: string, fix: string): void {
  const problems = (db.pragma('quick_check(5)') as { quick_check: string }[]).map(r => r.quick_check).filter(r => r !== 'ok')
  // SQLite's own lines ("On tree page 3 cell 0: btreeInitPage() returns error code 11") mean nothing
  // to a user: say how much is broken in one short clause.
  if (problems.length) fail('STORE_CORRUPT', `${file} is damaged (SQLite's integrity check found ${problems.length >= 5 ? '5 or more problems' : `${problems.length} problem${problems.length > 1 ? 's' : ''}`} in its pages); ${consequence}. ${fix}; \`sqlite3 ${file} .recover\` can salvage rows.`)
}

/**
 * Path checks before SQLite sees the file, so the usual mistakes get a precise message. Returns
 * whether the file exists. A writable open creates a missing folder only when it is the harness's
 * own (ownsFolder: the default store's); any other missing folder is refused, naming it: `--db
 * /nonexistent/dir/x.sqlite` made the folders, and a typo in a path became a new empty store. With
 * `create` false nothing is created (checkStorePath). `createFolder`: the path is the config's `store`,
 * written down on purpose (and checked in with the config), whose folder is made as report.outDir's is.
 */
function checkDatabasePath(file: string, abs: string, readonly: boolean, flag: string, create = true, createFolder = false): boolean {
  // `--db "$DB"` with DB unset resolved to the current folder: "  is a folder, not a database file".
  if (!file.trim()) fail('STORE_FAILED', `${flag} is ${file ? 'blank' : 'empty'}; pass ${flag} with the results database's file path (e.g. results.sqlite).`)
  let st: fs.Stats | undefined
  try {
    st = fs.statSync(abs)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOTDIR') fail('STORE_FAILED', `Cannot open database ${file}: a part of its path is a file, not a folder; pass ${flag} with a path inside a folder.`)
    if (code === 'EACCES') fail('STORE_READONLY', `Cannot open database ${file}: permission denied on one of its folders; fix the permissions or pass ${flag} elsewhere.`)
    if (code !== 'ENOENT') throw fileError(e, file, 'open the database', 'STORE_FAILED')
  }
  if (st?.isDirectory()) fail('STORE_FAILED', `${file} is a folder, not a database file; pass ${flag} with a file path such as ${path.join(file, 'results.sqlite')}.`)
  if (st && !st.isFile()) fail('STORE_FAILED', `${file} is not a regular file (a device, socket or pipe); pass ${flag} with a database file.`)
  if (!st) {
    if (readonly) fail('STORE_FAILED', `Database ${file} does not exist; run a sweep first or pass ${flag} with an existing file.`)
    const dir = path.dirname(abs)
    // statSync(abs) said ENOENT, so `dir` is a folder or missing (ENOTDIR and EACCES were refused above).
    if (!fs.existsSync(dir)) {
      if (!createFolder && !ownsFolder(dir)) fail('STORE_FAILED', `Cannot create database ${file}: its folder ${dir} does not exist, and the harness does not create folders you did not ask for (a mistyped path would become a new, empty store). Create it first (mkdir -p ${shellQuote(dir)}), or pass ${flag} with a path in an existing folder.`)
      if (!create) return false
      try {
        fs.mkdirSync(dir, { recursive: true })
      } catch (e) {
        throw fileError(e, dir, `create the folder for database ${file}`, (e as NodeJS.ErrnoException).code === 'EACCES' ? 'STORE_READONLY' : 'STORE_FAILED')
      }
    }
    if (!canWrite(dir)) fail('STORE_READONLY', `Cannot create database ${file}: the folder ${dir} is not writable; make it writable or pass ${flag} in a writable folder.`)
    return false
  }
  if (st.size > 0) checkHeader(file, abs, flag, readonly)
  if (!readonly) {
    if (!canWrite(abs)) fail('STORE_READONLY', `Database ${file} is read-only; make it writable (chmod u+w ${file}) or pass ${flag} with a writable copy. Read-only commands (report, export) work on it as it is.`)
    const dir = path.dirname(abs)
    if (!canWrite(dir)) fail('STORE_READONLY', `Database ${file} is in a folder that is not writable (${dir}); SQLite writes its journal (${path.basename(file)}-wal, -shm) beside it. Make the folder writable or copy the database to a writable one. Read-only commands (report, export) work on it as it is.`)
  }
  return true
}

/**
 * Whether a missing folder is the harness's own to create for a database: the harness home (where
 * the default store goes, src/config/defineConfig.ts storeFile), or a `.harness` folder in an existing
 * one (the default home's name: the shipped config's store is `.harness/results.sqlite`, relative to
 * the config, which is not the home when MOE_HARNESS_HOME points elsewhere).
 */
function ownsFolder(dir: string): boolean {
  if (dir === harnessHome()) return true
  return path.basename(dir) === '.harness' && fs.statSync(path.dirname(dir), { throwIfNoEntry: false })?.isDirectory() === true
}


/**
 * The path checks of a read-write open (ResultsStore), without creating or opening anything: `runSweep`
 * refuses a bad --db (a folder, a missing folder, a read-only file, another kind of file) before it
 * plans its pool or prints a line. Errors: those of the constructor's path checks (STORE_FAILED,
 * STORE_READONLY, STORE_NOT_HARNESS, STORE_CORRUPT), naming `file`.
 */
export function checkStorePath(file: string, flag = '--db', createFolder = false): void {
  checkDatabasePath(file, path.resolve(file), false, flag, false, createFolder)
}

/** A non-empty file must start with the SQLite header; otherwise it is some other kind of file. */
function checkHeader(file: string, abs: string, flag: string, readonly: boolean): void {
  const head = Buffer.alloc(100)
  let n = 0
  try {
    const fd = fs.openSync(abs, 'r')
    try { n = fs.readSync(fd, head, 0, 100, 0) } finally { fs.closeSync(fd) }
  } catch (e) {
    throw fileError(e, file, 'read the database', (e as NodeJS.ErrnoException).code === 'EACCES' ? 'STORE_READONLY' : 'STORE_FAILED')
  }
  if (head.subarray(0, Math.min(n, 16)).toString('latin1') !== SQLITE_MAGIC.slice(0, Math.min(n, 16))) {
    fail('STORE_NOT_HARNESS', notHarnessMessage(file, 'it is not a SQLite database', flag, readonly))
  }
  if (n < 100) fail('STORE_CORRUPT', `${file} is damaged: it is truncated to ${n} bytes, shorter than a SQLite header. Restore it from a backup or pass ${flag} with another file.`)
}

function canWrite(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.W_OK)
    return true
  } catch {
    return false
  }
}

/**
 * Opens without writing anything. A database in rollback-journal mode (how close() leaves it) opens
 * read-only as is. One still in WAL mode with no -wal file holds all its content in the main file:
 * it is read into memory with the header's journal bytes set to rollback, because a read-only
 * connection would otherwise create -wal/-shm beside it (and fail in a read-only folder). With a -wal
 * file (a writer is running, or one was killed) the normal read-only open reads the log.
 */
function openReadonly(file: string, abs: string): Database.Database {
  const head = Buffer.alloc(20)
  const fd = fs.openSync(abs, 'r')
  try { fs.readSync(fd, head, 0, 20, 0) } finally { fs.closeSync(fd) }
  const wal = head[18] === 2 || head[19] === 2
  if (wal && !fs.existsSync(`${abs}-wal`) && fs.statSync(abs).size <= 1 << 30) {
    const bytes = fs.readFileSync(abs)
    bytes[18] = 1
    bytes[19] = 1
    return new Database(bytes, { readonly: true })
  }
  return new Database(abs, { readonly: true, fileMustExist: true })
}

/** Ours, empty, or foreign, from the application id, the schema version and the table names. */
function identify(db: Database.Database, file: string): DatabaseKind {
  const appId = db.pragma('application_id', { simple: true }) as number
  const version = db.pragma('user_version', { simple: true }) as number
  const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).all() as { name: string }[]).map(r => r.name)
  if (appId === APPLICATION_ID) return { kind: 'harness', schemaVersion: version, stamped: true }
  if (appId !== 0) return { kind: 'foreign', reason: `its application id is 0x${(appId >>> 0).toString(16)}, not moe-harness's 0x${APPLICATION_ID.toString(16)}` }
  if (tables.length === 0 && version === 0) return { kind: 'empty' }
  if (version >= 1 && HARNESS_TABLES.every(t => tables.includes(t))) return { kind: 'harness', schemaVersion: version, stamped: false }
  const shown = tables.slice(0, 5).join(', ') + (tables.length > 5 ? ', ...' : '')
  return { kind: 'foreign', reason: `it has tables that are not a harness schema (${shown || 'none'}, user_version ${version})` }
}

/** A read-only open (report, export, merge inputs, cache) creates nothing, so a new path is no fix there. */
function notHarnessMessage(file: string, reason: string, flag: string, readonly: boolean): string {
  const fix = readonly ? 'a harness database (one a sweep wrote)' : 'a harness database, or a path where none exists yet to create one'
  return `${file} is not a moe-harness results database: ${reason}. The harness never adds its tables to another file; pass ${flag} with ${fix}.`
}

function removeCreated(abs: string): void {
  for (const f of [abs, `${abs}-wal`, `${abs}-shm`, `${abs}-journal`]) {
    try { fs.rmSync(f, { force: true }) } catch { /* best effort: the error being raised matters more */ }
  }
}

/**
 * SQLite's error codes (https://www.sqlite.org/rescode.html) → HarnessErrors naming the file and the
 * fix. HarnessErrors pass through; fs errors go through fileError.
 */
function storeError(e: unknown, file: string, readonly: boolean, flag = '--db'): HarnessError {
  if (e instanceof HarnessError) return e
  const code = String((e as { code?: unknown })?.code ?? '')
  const detail = (e as Error)?.message ?? String(e)
  if (!code.startsWith('SQLITE_')) return fileError(e, file, readonly ? 'read the database' : 'write the database', 'STORE_FAILED')
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new HarnessError('STORE_CORRUPT', `${file} is damaged (${detail.split('\n')[0]!.slice(0, 120)}): it may be truncated or overwritten. Restore it from a backup, or pass ${flag} with another file; \`sqlite3 ${file} .recover\` can salvage rows. The harness did not modify it.`, { cause: e })
  }
  if (code === 'SQLITE_READONLY_DIRECTORY' || code === 'SQLITE_READONLY_CANTINIT' || code === 'SQLITE_READONLY_CANTLOCK') {
    return new HarnessError('STORE_READONLY', `Cannot use ${file}: its folder ${path.dirname(path.resolve(file))} is not writable and SQLite needs its journal files (-wal, -shm) there (${detail}). Make the folder writable, or copy the database to a writable folder.`, { cause: e })
  }
  if (code.startsWith('SQLITE_READONLY') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH') {
    return new HarnessError('STORE_READONLY', `Cannot write ${file}: it is read-only (${detail}). Make it and its folder writable, or pass ${flag} with a writable copy; report and export read it as it is.`, { cause: e })
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new HarnessError('STORE_LOCKED', `${file} is locked by another process (waited ${BUSY_TIMEOUT_MS / 1000} s): a sweep or merge writing it? Wait for it to finish, or pass ${flag} with another file.`, { cause: e })
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return new HarnessError('STORE_FAILED', `Cannot open database ${file} (${detail}): check that it is a file (not a folder) and that you may read it and write its folder.`, { cause: e })
  }
  if (code === 'SQLITE_FULL') return new HarnessError('STORE_FAILED', `Cannot write ${file}: the disk is full; free some space and rerun (finished cells are kept).`, { cause: e })
  if (code.startsWith('SQLITE_IOERR')) return new HarnessError('STORE_FAILED', `I/O error on ${file} (${detail}): the disk, network file system or file may be failing; check it, or copy the database elsewhere.`, { cause: e })
  return new HarnessError('STORE_FAILED', `Database ${file}: ${detail}`, { cause: e })
}
