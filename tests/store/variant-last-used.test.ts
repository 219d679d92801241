// When a sweep last planned each variant (`variants.last_used_at`, schema 6): the leaderboard's current
// variant of a row is the one used last, so a reverted method edit shows the variant the code produces
// again. Stores written before schema 6 migrate forward with last_used_at = created_at (their rows keep
// their order), read-only opens migrate a private copy and leave the file as it was, and a merge keeps
// the later of two stores' times in either order. Written through the store's API (the sweep's side is
// tests/report/reverted-variant.test.ts).
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { summarize } from '../../src/report/leaderboardData.ts'
import { ResultsStore, SCHEMA_VERSION } from '../../src/store/resultsStore.ts'
import { runCli } from '../helpers/cli.ts'
import { rewriteAsSchema4, rewriteAsSchema5 } from '../helpers/schema4.ts'
import { tmpDir } from '../helpers/tmp.ts'

/** Busy-waits past the current millisecond, so the next ISO time the store writes is later. */
function nextMillisecond(): void {
  const at = Date.now()
  while (Date.now() <= at + 1) { /* the next write is at a later millisecond */ }
}

/**
 * A store holding variants `ids` of one row (frequency-pruning at ratio 0.25, default parameters),
 * recorded in that order at later milliseconds, variant `id` scoring `scores[id]` on one accuracy task.
 */
function storeWith(file: string, ids: string[], scores: Record<string, number>): void {
  const store = new ResultsStore(file)
  try {
    store.upsertModel({ model_id: 'm', name: 'm', path: '/nonexistent', architecture: 'OlmoeForCausalLM', config_json: '{}', total_params: 1 })
    store.saveMethodInfo({
      name: 'frequency-pruning', family: 'expert-pruning', description: 'd', reference_json: null, code_hash: 'c',
      params_json: JSON.stringify({ ratio: { type: 'number', default: 0.25, min: 0, max: 0.999999, description: 'r' } }),
    })
    store.saveTaskInfo({ name: 't', version: 1, kind: 'multiple_choice', description: '', metrics_json: '["acc"]', primary_metric: 'acc' })
    for (const id of ids) {
      store.saveVariant({
        variant_id: id, model_id: 'm', method: 'frequency-pruning', params_json: JSON.stringify({ ratio: 0.25 }), ratio: 0.25, achieved_ratio: 0.25, content_hash: `hash-${id}`,
        accounting_json: JSON.stringify({ totalParams: 1, expertParams: 1, baseExpertParams: 1, baseTotalParams: 1, nonzeroParams: 1, memoryBytes: 4, activeParamsPerToken: 1, baseActiveParamsPerToken: 1, layers: [] }),
        report_json: '{}', warnings_json: '[]', calibration_json: null, transform_seconds: 0, status: 'ready', error: null,
      })
      store.saveRun({ model_id: 'm', content_hash: `hash-${id}`, task: 't', task_version: 1, subset: 'all', scoring_key: 'sk', harness_version: '0', ort_version: '0', device: 'cpu', status: 'complete', error: null, docs: 4, seconds: 1, tokens_processed: 10, tokens_per_choice: 0 },
        [{ metric: 'acc', value: scores[id], stderr: null, higher_is_better: 1 }], [])
      nextMillisecond()
    }
  } finally {
    store.close()
  }
}

/** variant id → [created_at, last_used_at] as the store's typed read returns them. */
function times(file: string): Map<string, [string, string]> {
  const store = new ResultsStore(file, { readonly: true })
  try {
    return new Map(store.storedVariants('m').map(v => [v.variantId, [v.createdAt, v.lastUsedAt]]))
  } finally {
    store.close()
  }
}

/** The current row's variant id and average, and the superseded ids, as the leaderboard data has them. */
function board(file: string): { current: string; average: number | null; superseded: string[] } {
  const store = new ResultsStore(file, { readonly: true })
  try {
    const [m] = summarize(store, 'x').models
    assert.equal(m.rows.length, 1)
    return { current: m.rows[0].variantId, average: m.rows[0].average, superseded: m.superseded.map(s => s.variantId) }
  } finally {
    store.close()
  }
}

const sha = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')
const SCORES = { a: 0.25, b: 0.75 }

describe('variants.last_used_at', () => {
  it('a saved variant is made and used at once; marking a stored one used makes it the row, and never moves its time back', () => {
    const file = path.join(tmpDir(), 'store.sqlite')
    storeWith(file, ['a', 'b'], SCORES)
    const before = times(file)
    for (const [created, used] of before.values()) assert.equal(used, created)
    assert.ok(before.get('a')![0] < before.get('b')![0])
    assert.deepEqual(board(file), { current: 'b', average: 0.75, superseded: ['a'] })
    // The revert: a sweep plans `a` again (its cells complete, nothing else written).
    const store = new ResultsStore(file)
    try {
      store.markVariantUsed('a')
      // A time from a machine whose clock is ahead stays; a later mark with this clock does not lower it.
      store.db.prepare('UPDATE variants SET last_used_at = ? WHERE variant_id = ?').run('2999-01-01T00:00:00.000Z', 'b')
      store.markVariantUsed('b')
      store.markVariantUsed('unknown') // a variant this store never held: nothing to mark
    } finally {
      store.close()
    }
    const after = times(file)
    assert.equal(after.get('a')![0], before.get('a')![0], 'created_at unchanged')
    assert.ok(after.get('a')![1] > before.get('b')![1], 'a used after b was made')
    assert.equal(after.get('b')![1], '2999-01-01T00:00:00.000Z')
    assert.equal(after.size, 2)
  })

  it('the row is the variant used last, its own scores; ties go to the later made', () => {
    const file = path.join(tmpDir(), 'store.sqlite')
    storeWith(file, ['a', 'b'], SCORES)
    const store = new ResultsStore(file)
    try {
      store.markVariantUsed('a')
    } finally {
      store.close()
    }
    const { current, average, superseded } = board(file)
    assert.deepEqual({ current, average, superseded }, { current: 'a', average: 0.25, superseded: ['b'] })
    const ro = new ResultsStore(file, { readonly: true })
    try {
      const [m] = summarize(ro, 'x').models
      const [a, b] = ['a', 'b'].map(id => ro.storedVariants('m').find(v => v.variantId === id)!)
      assert.equal(m.rows[0].lastUsedAt, a.lastUsedAt)
      assert.equal(m.rows[0].createdAt, a.createdAt)
      assert.deepEqual([m.superseded[0].createdAt, m.superseded[0].lastUsedAt, m.superseded[0].supersededAt], [b.createdAt, b.lastUsedAt, a.lastUsedAt])
    } finally {
      ro.close()
    }
    // Same last use: the later made stands, as before schema 6.
    const w = new ResultsStore(file)
    try {
      w.db.prepare("UPDATE variants SET last_used_at = '2030-01-01T00:00:00.000Z'").run()
    } finally {
      w.close()
    }
    assert.equal(board(file).current, 'b')
  })

  for (const [schema, rewrite] of [[5, rewriteAsSchema5], [4, rewriteAsSchema4]] as const) {
    it(`a schema ${schema} store: read-only opens read it as it was (file untouched), a writable open migrates it with last_used_at = created_at`, () => {
      const dir = tmpDir()
      const file = path.join(dir, 'old.sqlite')
      storeWith(file, ['a', 'b'], SCORES)
      const made = new Map([...times(file)].map(([id, [created]]) => [id, created]))
      rewrite(file)
      const raw = new Database(file, { readonly: true })
      assert.equal(raw.pragma('user_version', { simple: true }), schema)
      assert.ok(!(raw.prepare('PRAGMA table_info(variants)').all() as { name: string }[]).some(c => c.name === 'last_used_at'))
      raw.close()
      const before = sha(file)
      fs.chmodSync(file, 0o444)
      // Read-only: migrated in a private copy; the rows keep their order (the later made is the row).
      for (const [id, [created, used]] of times(file)) assert.deepEqual([created, used], [made.get(id), made.get(id)])
      assert.deepEqual(board(file), { current: 'b', average: 0.75, superseded: ['a'] })
      // The CLI's report and export on the read-only file, nothing written beside it.
      const site = path.join(dir, 'site')
      const report = runCli(['report', '--db', file, '--out', site])
      assert.equal(report.status, 0, report.stderr)
      const data = JSON.parse(fs.readFileSync(path.join(site, 'leaderboard.json'), 'utf8'))
      assert.deepEqual(data.models[0].rows.map((r: { variantId: string; lastUsedAt: string }) => [r.variantId, r.lastUsedAt]), [['b', made.get('b')]])
      const exported = runCli(['export', '--db', file, '--json', path.join(dir, 'out.json')])
      assert.equal(exported.status, 0, exported.stderr)
      const rows = JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8')) as { variant_id: string; value: number }[]
      assert.deepEqual(rows.map(r => [r.variant_id, r.value]).sort(), [['a', 0.25], ['b', 0.75]])
      assert.equal(sha(file), before)
      assert.deepEqual(fs.readdirSync(dir).sort(), ['old.sqlite', 'out.json', 'site'])
      // Writable: migrated in place, then a sweep's mark works on it.
      fs.chmodSync(file, 0o644)
      const w = new ResultsStore(file)
      try {
        assert.equal(w.db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
        w.markVariantUsed('a')
      } finally {
        w.close()
      }
      const migrated = times(file)
      assert.equal(migrated.get('b')![1], made.get('b'))
      assert.ok(migrated.get('a')![1] > made.get('b')!)
      assert.equal(board(file).current, 'a')
    })
  }

  it("a variant an older harness's sweep records in a store migrated under it (no last_used_at) counts as used when made, merged too", () => {
    const dir = tmpDir()
    const file = path.join(dir, 'store.sqlite')
    storeWith(file, ['a'], SCORES)
    nextMillisecond()
    // A sweep of a schema 5 harness opened the store before a newer harness migrated it, and goes on
    // writing rows with the columns it knows: last_used_at gets the column's default.
    const store = new ResultsStore(file)
    try {
      const a = store.variant('a')!
      store.db.prepare(`INSERT INTO variants (variant_id, model_id, method, params_json, ratio, achieved_ratio, content_hash, accounting_json, report_json,
          warnings_json, calibration_json, transform_seconds, status, error, error_json, created_at)
        VALUES ('b', 'm', 'frequency-pruning', @params_json, 0.25, 0.25, 'hash-b', @accounting_json, '{}', '[]', NULL, 0, 'ready', NULL, NULL, @created_at)`)
        .run({ params_json: a.params_json, accounting_json: a.accounting_json, created_at: new Date().toISOString() })
      store.saveRun({ model_id: 'm', content_hash: 'hash-b', task: 't', task_version: 1, subset: 'all', scoring_key: 'sk', harness_version: '0', ort_version: '0', device: 'cpu', status: 'complete', error: null, docs: 4, seconds: 1, tokens_processed: 10, tokens_per_choice: 0 },
        [{ metric: 'acc', value: SCORES.b, stderr: null, higher_is_better: 1 }], [])
    } finally {
      store.close()
    }
    const [created, used] = times(file).get('b')!
    assert.equal(used, created)
    assert.ok(created > times(file).get('a')![1])
    assert.deepEqual(board(file), { current: 'b', average: 0.75, superseded: ['a'] })
    const out = path.join(dir, 'merged.sqlite')
    const r = runCli(['merge', file, '--out', out])
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(board(out), { current: 'b', average: 0.75, superseded: ['a'] })
    // Used again later by this harness: the mark applies as to any row.
    const w = new ResultsStore(out)
    try {
      w.markVariantUsed('a')
    } finally {
      w.close()
    }
    assert.equal(board(out).current, 'a')
  })

  it('merge keeps the later last_used_at of the two stores, in either order, from a schema 5 input too', () => {
    const dir = tmpDir()
    // Machine 1 made a, then b (the edit); machine 2 (a copy of it before the edit) used a again later.
    const one = path.join(dir, 'one.sqlite'), two = path.join(dir, 'two.sqlite')
    storeWith(one, ['a', 'b'], SCORES)
    fs.copyFileSync(one, two)
    const w = new ResultsStore(two)
    try {
      w.markVariantUsed('a')
    } finally {
      w.close()
    }
    const latestA = times(two).get('a')![1]
    assert.ok(latestA > times(one).get('b')![1])
    const old = path.join(dir, 'one-schema5.sqlite')
    fs.copyFileSync(one, old)
    rewriteAsSchema5(old)
    for (const [name, inputs] of [['one-two', [one, two]], ['two-one', [two, one]], ['old-two', [old, two]], ['two-old', [two, old]]] as const) {
      const out = path.join(dir, `${name}.sqlite`)
      const r = runCli(['merge', ...inputs, '--out', out])
      assert.equal(r.status, 0, r.stderr)
      const merged = times(out)
      assert.equal(merged.get('a')![1], latestA, name)
      assert.equal(merged.get('b')![1], times(one).get('b')![1], name)
      assert.equal(merged.get('a')![0], times(one).get('a')![0], `${name}: created_at is the first store's`)
      assert.deepEqual(board(out), { current: 'a', average: 0.25, superseded: ['b'] }, name)
    }
    // The store API's merge into an existing store that used `a` earlier than the input did.
    const into = path.join(dir, 'into.sqlite')
    fs.copyFileSync(one, into)
    const s = new ResultsStore(into)
    try {
      s.mergeFrom(two)
    } finally {
      s.close()
    }
    assert.equal(times(into).get('a')![1], latestA)
  })
})
