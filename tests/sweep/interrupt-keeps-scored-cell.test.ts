// Fresh-user trial: Ctrl-C during `sweep` printed that "the cells being scored and any variant being
// prepared finish first", waited for them (42 s), then stored none of them: the store held 0 runs.
// cell.ts score() returned nothing once the signal was aborted, even for a cell whose scoring had
// finished. A cell that has started scoring now finishes and is stored; no cell starts after the
// interrupt; the rerun scores only the cells not stored.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { parseConfig } from '../../src/config/defineConfig.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { runSweep, type SweepProgress } from '../../src/sweep/runSweep.ts'
import { ROOT } from '../helpers/cli.ts'
import { tmpDir, useHarnessHome } from '../helpers/tmp.ts'

describe('a sweep interrupted while a cell is scored', () => {
  const dir = tmpDir()
  useHarnessHome(path.join(dir, 'home'))
  // One worker, so one lane: exactly one cell is in flight when the abort lands.
  const config = parseConfig({
    models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0, 0.5],
    tasks: ['brown-cloze', 'brown-agreement'], subset: { limit: 4 }, calibration: { sequences: 2, length: 16 },
    pool: { workers: 1, threads: 1 },
  }, 'test config')
  const isCell = (label: string) => /^tiny frequency-pruning r=\S+ \S+$/.test(label)

  type Cell = { key: string; status: string; metrics: Record<string, [number, number | null]> }
  const cells = (db: string): Cell[] => {
    const store = new ResultsStore(db, { readonly: true })
    try {
      const runs = store.all<{ run_id: number; content_hash: string; task: string; status: string }>('SELECT run_id, content_hash, task, status FROM runs ORDER BY content_hash, task')
      return runs.map(r => ({
        key: `${r.content_hash} ${r.task}`, status: r.status,
        metrics: Object.fromEntries(store.all<{ metric: string; value: number; stderr: number | null }>('SELECT metric, value, stderr FROM metrics WHERE run_id = ?', r.run_id).map(m => [m.metric, [m.value, m.stderr]])),
      }))
    } finally {
      store.close()
    }
  }
  const leases = (db: string): number => {
    const store = new ResultsStore(db, { readonly: true })
    try {
      return store.all<{ n: number }>('SELECT COUNT(*) AS n FROM leases')[0]!.n
    } finally {
      store.close()
    }
  }

  it('stores the cell being scored with the metrics of an uninterrupted run; the rerun scores only the rest', async () => {
    const reference = path.join(dir, 'reference.sqlite')
    const whole = await runSweep({ config, baseDir: dir, db: reference })
    assert.equal(whole.failed, 0, JSON.stringify(whole.failures))
    const expected = cells(reference)
    assert.equal(expected.length, whole.completed)
    assert.ok(expected.length >= 3, `${expected.length} distinct cells: too few to leave some for the rerun`)

    const db = path.join(dir, 'interrupted.sqlite')
    const controller = new AbortController()
    const events: SweepProgress[] = []
    const summary = await runSweep({
      config, baseDir: dir, db, signal: controller.signal,
      onProgress: p => {
        events.push(p)
        // The first cell label is onScoring's, sent as the cell's scoring starts.
        if (isCell(p.label) && !controller.signal.aborted) controller.abort()
      },
    })
    const first = events.findIndex(p => isCell(p.label))
    assert.ok(first >= 0, 'scoring started')
    assert.equal(summary.interrupted, true)
    assert.equal(summary.completed, 1, `the cell being scored is counted: ${JSON.stringify(summary)}`)
    assert.equal(summary.failed, 0, JSON.stringify(summary.failures))
    // After the abort: only the in-flight cell's completion, no other cell started.
    assert.deepEqual(events.slice(first + 1).map(p => [p.done, p.label]), [[1, events[first]!.label]])
    const stored = cells(db)
    assert.equal(stored.length, 1, 'the finished cell is in the store')
    assert.equal(stored[0]!.status, 'complete')
    assert.deepEqual(stored[0], expected.find(c => c.key === stored[0]!.key), 'the same metrics as the uninterrupted run')
    assert.equal(leases(db), 0, 'no lease left behind')
    const sweeps = new ResultsStore(db, { readonly: true })
    try {
      const row = sweeps.all<{ completed: number; timings_json: string }>('SELECT completed, timings_json FROM sweeps')[0]!
      assert.equal(row.completed, 1)
      assert.equal(JSON.parse(row.timings_json).interrupted, true)
    } finally {
      sweeps.close()
    }

    const rerun = await runSweep({ config, baseDir: dir, db })
    assert.equal(rerun.interrupted, false)
    assert.equal(rerun.completed, expected.length - 1, 'the rerun scores only the cells not stored')
    assert.equal(rerun.skipped - rerun.sameAsScoredHere, 1, 'the interrupted run\'s cell is skipped')
    assert.deepEqual(cells(db), expected)
    assert.equal(leases(db), 0)
  })

  it('does not start a cell whose variant was being prepared when interrupted', async () => {
    const db = path.join(dir, 'preparing.sqlite')
    const controller = new AbortController()
    const labels: string[] = []
    // A ratio the first test did not prepare: its variant is not in the home yet.
    const fresh = { ...config, ratios: [0.25] }
    const summary = await runSweep({
      config: fresh, baseDir: dir, db, signal: controller.signal,
      onProgress: p => {
        labels.push(p.label)
        if (p.label.startsWith('preparing ')) controller.abort()
      },
    })
    assert.ok(labels.some(l => l.startsWith('preparing ')), `a variant was prepared: ${JSON.stringify(labels)}`)
    assert.equal(summary.interrupted, true)
    assert.equal(summary.completed + summary.failed, 0, JSON.stringify(summary))
    assert.deepEqual(labels.filter(isCell), [], 'no cell started scoring after the interrupt')
    assert.deepEqual(cells(db), [])
    assert.equal(leases(db), 0)
  })
})
