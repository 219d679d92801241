// Provenance (issue 12 §1): the task data file's sha256 is part of every run's key, so replacing a
// task's data with other content re-scores it while an identical copy at another path does not; rows
// from before schema 5 (no data hash) stay readable, keep their metrics, and are never reused.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { ResultsStore, SCHEMA_VERSION } from '../../src/store/resultsStore.ts'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTaskFixtures } from '../helpers/taskFixtures.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { rewriteAsSchema4 } from '../helpers/schema4.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 71 })
writeTaskFixtures(path.join(dir, 'data1'))
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const db = path.join(dir, 'results.sqlite')

function sweep(dataDir: string, store = db) {
  const file = path.join(dir, `${path.basename(dataDir)}.config.ts`)
  const body = { models: { m: 'model' }, methods: [{ method: 'magnitude-pruning', params: { score: 'magnitude' } }], ratios: [0], tasks: ['arc_easy', 'brown-cloze'], subset: { sample: 4 }, dataDir, pool: { workers: 1, threads: 1 } }
  writeSweepConfig(file, body)
  const r = runCli(['sweep', '--config', file, '--db', store, '--json'], { env })
  assert.equal(r.status, 0, r.stderr)
  return lastJson(r.stdout)
}
const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')
function runs(store = db) {
  const s = new ResultsStore(store, { readonly: true })
  try {
    return s.all<{ run_id: number; task: string; status: string; data_file: string | null; data_sha256: string; metrics: number; samples: number }>(`SELECT r.run_id, r.task, r.status, r.data_file, r.data_sha256,
      (SELECT COUNT(*) FROM metrics x WHERE x.run_id = r.run_id) AS metrics, (SELECT COUNT(*) FROM samples x WHERE x.run_id = r.run_id) AS samples
      FROM runs r ORDER BY r.run_id`)
  } finally {
    s.close()
  }
}

describe('run provenance: the task data file', () => {
  const arc1 = path.join(dir, 'data1', 'arc_easy', 'test.jsonl')

  it('records the data file and its sha256 with every run', () => {
    const s = sweep('data1')
    assert.equal(s.completed, 2)
    const rows = runs()
    const arc = rows.find(r => r.task === 'arc-easy')!
    assert.equal(arc.data_file, arc1)
    assert.equal(arc.data_sha256, sha256(arc1))
    const cloze = rows.find(r => r.task === 'brown-cloze')!
    assert.match(cloze.data_sha256, /^[0-9a-f]{64}$/)
  })

  it('an identical copy at another path reuses the stored results; other content re-scores only that task', () => {
    fs.cpSync(path.join(dir, 'data1'), path.join(dir, 'data2'), { recursive: true })
    const same = sweep('data2')
    assert.deepEqual([same.completed, same.skipped], [0, 2])
    const arc2 = path.join(dir, 'data2', 'arc_easy', 'test.jsonl')
    // Another revision of the dataset: one question's wording changed.
    fs.writeFileSync(arc2, fs.readFileSync(arc2, 'utf8').replace('Ice melts into', 'When it warms up, ice melts into'))
    const changed = sweep('data2')
    assert.deepEqual([changed.completed, changed.skipped], [1, 1])
    const arc = runs().filter(r => r.task === 'arc-easy')
    assert.equal(arc.length, 2, 'the earlier run stays stored beside the new one')
    assert.deepEqual(arc.map(r => r.data_sha256), [sha256(arc1), sha256(arc2)])
    assert.equal(arc[1].data_file, arc2)
    assert.notEqual(sha256(arc1), sha256(arc2))
  })

  it('migrates a schema-4 store: old runs keep their metrics and samples, are readable, and are not reused', () => {
    const old = path.join(dir, 'old.sqlite')
    fs.copyFileSync(db, old)
    rewriteAsSchema4(old, { onlyFirstRunPerTask: true })
    const before = new Database(old, { readonly: true })
    const counts = before.prepare('SELECT (SELECT COUNT(*) FROM metrics) AS m, (SELECT COUNT(*) FROM samples) AS s').get() as { m: number; s: number }
    before.close()
    assert.ok(counts.m > 0 && counts.s > 0)

    new ResultsStore(old).close() // migrates
    const migrated = runs(old)
    assert.equal(migrated.length, 2)
    for (const r of migrated) {
      assert.equal(r.status, 'complete')
      assert.equal(r.data_sha256, '')
      assert.equal(r.data_file, null)
      assert.ok(r.metrics > 0 && r.samples > 0, 'metrics and samples survive the table rebuild')
    }
    const s = new ResultsStore(old, { readonly: true })
    assert.equal(s.db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
    s.close()
    // Their data file is unknown: the same sweep scores both cells again instead of trusting them.
    const again = sweep('data1', old)
    assert.deepEqual([again.completed, again.skipped], [2, 0])
    assert.equal(runs(old).length, 4)
  })
})
