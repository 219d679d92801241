// runs.session_seconds (schema 7): the part of a run's wall time the workers spent opening the variant's
// session, which the leaderboard's tokens/s leaves out. Stores written before it open as they did: a
// read-only open migrates a private copy (the file untouched), a writable one migrates in place, and
// their runs read as null (unknown) and keep their wall-time tokens/s; merge carries the column, null
// included. Written through the store's API (the sweep's side is tests/report/scoring-throughput.test.ts).
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { summarize } from '../../src/report/leaderboardData.ts'
import { ResultsStore, SCHEMA_VERSION } from '../../src/store/resultsStore.ts'
import { runCli } from '../helpers/cli.ts'
import { rewriteAsSchema6 } from '../helpers/schema4.ts'
import { tmpDir } from '../helpers/tmp.ts'

/** One ready variant `a` with a run per entry of `runs` (task name → seconds, session seconds, tokens). */
function storeWith(file: string, runs: Record<string, [seconds: number, session: number, tokens: number]>): void {
  const store = new ResultsStore(file)
  try {
    store.upsertModel({ model_id: 'm', name: 'm', path: '/nonexistent', architecture: 'OlmoeForCausalLM', config_json: '{}', total_params: 1 })
    store.saveVariant({
      variant_id: 'a', model_id: 'm', method: 'frequency-pruning', params_json: JSON.stringify({ ratio: 0.25 }), ratio: 0.25, achieved_ratio: 0.25, content_hash: 'hash-a',
      accounting_json: JSON.stringify({ totalParams: 1, expertParams: 1, baseExpertParams: 1, baseTotalParams: 1, nonzeroParams: 1, memoryBytes: 4, activeParamsPerToken: 1, baseActiveParamsPerToken: 1, layers: [] }),
      report_json: '{}', warnings_json: '[]', calibration_json: null, transform_seconds: 0, status: 'ready', error: null,
    })
    for (const [task, [seconds, session, tokens]] of Object.entries(runs)) addRun(store, task, seconds, session, tokens)
  } finally {
    store.close()
  }
}

function addRun(store: ResultsStore, task: string, seconds: number, session: number, tokens: number): void {
  store.saveTaskInfo({ name: task, version: 1, kind: 'multiple_choice', description: '', metrics_json: '["acc"]', primary_metric: 'acc' })
  store.saveRun({
    model_id: 'm', content_hash: 'hash-a', task, task_version: 1, subset: 'all', scoring_key: 'sk', harness_version: '0', ort_version: '0', device: 'cpu',
    status: 'complete', error: null, docs: 4, seconds, tokens_processed: tokens, tokens_per_choice: 0, session_seconds: session,
  }, [{ metric: 'acc', value: 0.5, stderr: null, higher_is_better: 1 }], [])
}

/** task → sessionSeconds as the typed read returns it, and the row's tokens/s. */
function read(file: string): { session: Record<string, number | null>; tokensPerSecond: number | null } {
  const store = new ResultsStore(file, { readonly: true })
  try {
    const session = Object.fromEntries(store.completeRuns('m').map(r => [r.task, r.sessionSeconds]))
    const [m] = summarize(store, 'x').models
    assert.equal(m.rows.length, 1)
    return { session, tokensPerSecond: m.rows[0].tokensPerSecond }
  } finally {
    store.close()
  }
}

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')
// The first task opened the session (6 of its 10 s), the second reused it.
const RUNS: Record<string, [seconds: number, session: number, tokens: number]> = { t1: [10, 6, 1000], t2: [5, 0, 500] }

describe('runs.session_seconds', () => {
  it('is stored per run and read back; tokens/s divides by the seconds without it; merge carries it', () => {
    const dir = tmpDir()
    const file = path.join(dir, 'store.sqlite')
    storeWith(file, RUNS)
    assert.deepEqual(read(file), { session: { t1: 6, t2: 0 }, tokensPerSecond: 1500 / (15 - 6) })
    const out = path.join(dir, 'merged.sqlite')
    const r = runCli(['merge', file, '--out', out])
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(read(out), read(file))
  })

  it('a schema 6 store: its runs read as null and keep the wall-time tokens/s, read-only (file untouched) and after a writable open migrates it', () => {
    const dir = tmpDir()
    const file = path.join(dir, 'old.sqlite')
    storeWith(file, RUNS)
    rewriteAsSchema6(file)
    const raw = new Database(file, { readonly: true })
    assert.equal(raw.pragma('user_version', { simple: true }), 6)
    assert.ok(!(raw.prepare('PRAGMA table_info(runs)').all() as { name: string }[]).some(c => c.name === 'session_seconds'))
    raw.close()
    const before = sha(file)
    fs.chmodSync(file, 0o444)
    assert.deepEqual(read(file), { session: { t1: null, t2: null }, tokensPerSecond: 1500 / 15 })
    assert.equal(sha(file), before)
    assert.deepEqual(fs.readdirSync(dir), ['old.sqlite'])
    // The CLI's report on the read-only file: the same figure in the site's data.
    const site = path.join(dir, 'site')
    const report = runCli(['report', '--db', file, '--out', site])
    assert.equal(report.status, 0, report.stderr)
    assert.equal(JSON.parse(fs.readFileSync(path.join(site, 'leaderboard.json'), 'utf8')).models[0].rows[0].tokensPerSecond, 100)
    // A merge of the old store keeps its runs unknown, not 0.
    const merged = path.join(dir, 'merged.sqlite')
    const m = runCli(['merge', file, '--out', merged])
    assert.equal(m.status, 0, m.stderr)
    assert.deepEqual(read(merged), { session: { t1: null, t2: null }, tokensPerSecond: 100 })
    assert.equal(sha(file), before)
    // Writable: migrated in place; a new run beside the old ones counts its session, the old ones their wall time.
    fs.chmodSync(file, 0o644)
    const w = new ResultsStore(file)
    try {
      assert.equal(w.db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
      addRun(w, 't3', 4, 2, 400)
    } finally {
      w.close()
    }
    assert.deepEqual(read(file), { session: { t1: null, t2: null, t3: 2 }, tokensPerSecond: 1900 / (19 - 2) })
  })

  it("a run an older harness's sweep writes into a migrated store (the columns it knows) reads as null", () => {
    const file = path.join(tmpDir(), 'store.sqlite')
    storeWith(file, { t1: RUNS.t1 })
    const store = new ResultsStore(file)
    try {
      store.saveTaskInfo({ name: 't2', version: 1, kind: 'multiple_choice', description: '', metrics_json: '["acc"]', primary_metric: 'acc' })
      const id = store.db.prepare(`INSERT INTO runs (model_id, content_hash, task, task_version, subset, scoring_key, data_sha256, data_file,
          harness_version, ort_version, device, status, error, error_json, docs, seconds, tokens_processed, tokens_per_choice, created_at)
        VALUES ('m', 'hash-a', 't2', 1, 'all', 'sk', '', NULL, '0', '0', 'cpu', 'complete', NULL, NULL, 4, 5, 500, 0, ?)`).run(new Date().toISOString()).lastInsertRowid
      store.db.prepare(`INSERT INTO metrics (run_id, metric, value, stderr, higher_is_better) VALUES (?, 'acc', 0.5, NULL, 1)`).run(id)
    } finally {
      store.close()
    }
    assert.deepEqual(read(file), { session: { t1: 6, t2: null }, tokensPerSecond: 1500 / (15 - 6) })
  })
})
