// The store's error boundary: which files are harness databases, stamping old ones, refusing foreign
// ones byte-for-byte, read-only opens that leave nothing beside the file, and SQLite failures mapped
// to STORE_* codes naming the file.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { isHarnessError } from '../../src/errors.ts'
import { APPLICATION_ID, describeDatabase, isHarnessDatabase, ResultsStore, SCHEMA_VERSION, validateMergeInputs } from '../../src/store/resultsStore.ts'
import { tmpDir } from '../helpers/tmp.ts'

function storeCode(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    assert.ok(isHarnessError(e), `not a HarnessError: ${(e as Error).stack}`)
    return e.code
  }
  assert.fail('no error')
}

const HARNESS_TABLES_V1 = `CREATE TABLE models (model_id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL, architecture TEXT NOT NULL, config_json TEXT NOT NULL, total_params INTEGER NOT NULL, created_at TEXT NOT NULL);
  CREATE TABLE variants (variant_id TEXT PRIMARY KEY, model_id TEXT NOT NULL, method TEXT NOT NULL, params_json TEXT NOT NULL, ratio REAL NOT NULL, achieved_ratio REAL, content_hash TEXT, accounting_json TEXT, report_json TEXT, warnings_json TEXT, calibration_json TEXT, transform_seconds REAL, status TEXT NOT NULL, error TEXT, created_at TEXT NOT NULL);
  CREATE TABLE runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, model_id TEXT NOT NULL, content_hash TEXT NOT NULL, task TEXT NOT NULL, task_version INTEGER NOT NULL, subset TEXT NOT NULL, scoring_key TEXT NOT NULL, harness_version TEXT NOT NULL, ort_version TEXT NOT NULL, device TEXT NOT NULL, status TEXT NOT NULL, error TEXT, docs INTEGER NOT NULL, seconds REAL NOT NULL, tokens_processed INTEGER NOT NULL, tokens_per_choice INTEGER NOT NULL, created_at TEXT NOT NULL, UNIQUE (model_id, content_hash, task, task_version, subset, scoring_key));
  CREATE TABLE metrics (run_id INTEGER NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL, stderr REAL, higher_is_better INTEGER NOT NULL, PRIMARY KEY (run_id, metric));
  CREATE TABLE samples (run_id INTEGER NOT NULL, doc INTEGER NOT NULL, gold_json TEXT NOT NULL, lls_json TEXT NOT NULL, lls_unconditional_json TEXT, greedy_json TEXT NOT NULL, preds_json TEXT NOT NULL, counts_json TEXT, PRIMARY KEY (run_id, doc));
  CREATE TABLE sweeps (sweep_id INTEGER PRIMARY KEY AUTOINCREMENT, config_json TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT, cells INTEGER NOT NULL, completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, timings_json TEXT);`

describe('results store boundary', () => {
  it('stamps new databases with the application id and leaves one self-contained file', () => {
    const dir = tmpDir()
    const file = path.join(dir, 'r.sqlite')
    const s = new ResultsStore(file)
    s.upsertModel({ model_id: 'm', name: 'n', path: 'p', architecture: 'a', config_json: '{}', total_params: 1 })
    s.close()
    assert.deepEqual(fs.readdirSync(dir), ['r.sqlite'])
    const header = fs.readFileSync(file).subarray(0, 100)
    assert.equal(header.readUInt32BE(68), APPLICATION_ID)
    assert.deepEqual(describeDatabase(file), { kind: 'harness', schemaVersion: SCHEMA_VERSION, stamped: true })
    assert.equal(isHarnessDatabase(file), true)
    // A read-only open of it writes nothing, not even -wal/-shm.
    const before = fs.readFileSync(file)
    const r = new ResultsStore(file, { readonly: true })
    assert.equal(r.all<{ n: number }>('SELECT count(*) AS n FROM models')[0].n, 1)
    r.close()
    assert.deepEqual(fs.readdirSync(dir), ['r.sqlite'])
    assert.ok(before.equals(fs.readFileSync(file)))
  })

  it('reads a WAL-mode database without a log and without creating one', () => {
    const dir = tmpDir()
    const file = path.join(dir, 'wal.sqlite')
    new ResultsStore(file).close()
    const db = new Database(file)
    db.pragma('journal_mode = WAL')
    db.prepare(`INSERT INTO models VALUES ('m', 'n', 'p', 'a', '{}', 1, 't')`).run()
    db.close()
    assert.equal(fs.readFileSync(file)[18], 2, 'still WAL mode on disk')
    const r = new ResultsStore(file, { readonly: true })
    assert.equal(r.all<{ n: number }>('SELECT count(*) AS n FROM models')[0].n, 1)
    r.close()
    assert.deepEqual(fs.readdirSync(dir), ['wal.sqlite'])
  })

  it('recognises a database from before the application id by its schema and stamps it when opened writable', () => {
    const dir = tmpDir()
    const file = path.join(dir, 'old.sqlite')
    const db = new Database(file)
    db.exec(HARNESS_TABLES_V1)
    db.prepare(`INSERT INTO models VALUES ('m', 'n', 'p', 'a', '{}', 1, 't')`).run()
    db.pragma('user_version = 1')
    db.close()
    assert.deepEqual(describeDatabase(file), { kind: 'harness', schemaVersion: 1, stamped: false })
    // Read-only: recognised and read through a private migrated copy; the file is not touched.
    const before = fs.readFileSync(file)
    const ro = new ResultsStore(file, { readonly: true })
    assert.equal(ro.all<{ name: string }>('SELECT name FROM models')[0].name, 'n')
    ro.close()
    assert.ok(before.equals(fs.readFileSync(file)))
    assert.deepEqual(describeDatabase(file), { kind: 'harness', schemaVersion: 1, stamped: false })
    new ResultsStore(file).close()
    assert.deepEqual(describeDatabase(file), { kind: 'harness', schemaVersion: SCHEMA_VERSION, stamped: true })
    const r = new ResultsStore(file, { readonly: true })
    assert.equal(r.all<{ name: string }>('SELECT name FROM models')[0].name, 'n')
    r.close()
  })

  it('refuses another application\'s database and leaves it byte-identical', () => {
    const dir = tmpDir()
    const file = path.join(dir, 'notes.sqlite')
    const db = new Database(file)
    db.exec(`CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('buy milk')`)
    db.close()
    const before = fs.readFileSync(file)
    assert.equal(describeDatabase(file).kind, 'foreign')
    assert.equal(isHarnessDatabase(file), false)
    assert.equal(storeCode(() => new ResultsStore(file)), 'STORE_NOT_HARNESS')
    assert.equal(storeCode(() => new ResultsStore(file, { readonly: true })), 'STORE_NOT_HARNESS')
    assert.ok(before.equals(fs.readFileSync(file)))
    assert.deepEqual(fs.readdirSync(dir), ['notes.sqlite'])
    // Same for a file stamped by another application, even with harness-like tables.
    const other = path.join(dir, 'other.sqlite')
    const o = new Database(other)
    o.exec(HARNESS_TABLES_V1)
    o.pragma('user_version = 1')
    o.pragma('application_id = 42')
    o.close()
    assert.equal(storeCode(() => new ResultsStore(other)), 'STORE_NOT_HARNESS')
  })

  it('maps damaged files, folders and missing files to STORE_* codes naming the file', () => {
    const dir = tmpDir()
    const good = path.join(dir, 'good.sqlite')
    const s = new ResultsStore(good)
    s.upsertModel({ model_id: 'm', name: 'n', path: 'p', architecture: 'a', config_json: '{}', total_params: 1 })
    s.saveRun({ model_id: 'm', content_hash: 'h', task: 't', task_version: 1, subset: 'all', scoring_key: 'k', harness_version: '0', ort_version: '0', device: 'cpu', status: 'complete', error: null, docs: 500, seconds: 1, tokens_processed: 1, tokens_per_choice: 1 },
      [], Array.from({ length: 500 }, (_, doc) => ({ doc, gold_json: '0', lls_json: '[-1,-2,-3,-4]', lls_unconditional_json: null, greedy_json: '[]', preds_json: '{}', counts_json: null })))
    s.close()
    const bytes = fs.readFileSync(good)
    const cases: [string, Buffer | 'dir', string][] = [
      ['text.sqlite', Buffer.from('a,b,c\n1,2,3\n'), 'STORE_NOT_HARNESS'],
      ['header.sqlite', bytes.subarray(0, 40), 'STORE_CORRUPT'],
      ['half.sqlite', bytes.subarray(0, Math.floor(bytes.length / 2)), 'STORE_CORRUPT'],
      ['folder.sqlite', 'dir', 'STORE_FAILED'],
    ]
    for (const [name, content, code] of cases) {
      const file = path.join(dir, name)
      if (content === 'dir') fs.mkdirSync(file)
      else fs.writeFileSync(file, content)
      const msg = (() => { try { const r = new ResultsStore(file, { readonly: true }); r.all('SELECT * FROM samples'); r.close(); return '' } catch (e) { assert.ok(isHarnessError(e)); assert.equal(e.code, code, `${name}: ${e.message}`); return e.message } })()
      assert.match(msg, new RegExp(name.replace('.', '\\.')), name)
    }
    assert.equal(storeCode(() => new ResultsStore(path.join(dir, 'none.sqlite'), { readonly: true })), 'STORE_FAILED')
    assert.equal(storeCode(() => validateMergeInputs([good, path.join(dir, 'half.sqlite')])), 'STORE_CORRUPT')
    assert.equal(describeDatabase(path.join(dir, 'half.sqlite')).kind, 'unreadable')
    assert.equal(describeDatabase(path.join(dir, 'none.sqlite')).kind, 'missing')
  })

  it('a database locked by another writer is STORE_LOCKED after the busy timeout', () => {
    const dir = tmpDir()
    const file = path.join(dir, 'locked.sqlite')
    new ResultsStore(file).close()
    const holder = new Database(file)
    holder.exec('BEGIN EXCLUSIVE')
    holder.prepare(`INSERT INTO models VALUES ('m', 'n', 'p', 'a', '{}', 1, 't')`).run()
    try {
      const t0 = performance.now()
      assert.equal(storeCode(() => new ResultsStore(file)), 'STORE_LOCKED')
      assert.ok(performance.now() - t0 >= 9000, 'waited for the busy timeout first')
    } finally {
      holder.exec('ROLLBACK')
      holder.close()
    }
  })
})
