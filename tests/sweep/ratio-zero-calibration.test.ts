// At ratio 0 a method removes, merges or replaces nothing, and the built-in methods declare that they
// read no statistics there (needs(params) is empty), so a sweep calibrates only for the variants that
// read them: a sweep over ratios [0, ...] no longer ran a full calibration pass for its ratio-0
// variants. Ratio-0 variants are the unpruned model (its content hash), scored once and found again
// by their run key whatever the variant id. NAEE's dynamic skipping edits the model even at ratio 0
// and still calibrates.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { isBaselineContent } from '../../src/identity/keys.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { loadAllMethods } from '../../src/methods/registry.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { planVariant } from '../../src/variants/prepare.ts'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir('moe-ratio-zero-')
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed: 83 })
const home = path.join(dir, 'home')
const env = { MOE_HARNESS_HOME: home }
const db = path.join(dir, 'results.sqlite')
const CALIBRATING = ['reap', 'frequency-pruning', 'ean', 'novice-replacement', 'm-smoe', 'hc-smoe', 'expert-merging']

function sweep(name: string, methods: unknown[], ratios: number[]) {
  const config = writeSweepConfig(path.join(dir, `${name}.config.ts`), {
    models: { m: model.dir }, methods, ratios, tasks: ['brown-cloze'], subset: { limit: 6 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
  })
  const r = runCli(['sweep', '--config', config, '--db', db, '--json'], { env })
  assert.equal(r.status, 0, r.stderr)
  return { summary: lastJson(r.stdout), stderr: r.stderr }
}

const calibrationFiles = () => (fs.existsSync(path.join(home, 'calibration')) ? fs.readdirSync(path.join(home, 'calibration')) : [])

function variants(): { method: string; ratio: number; content_hash: string; calibration_json: string | null }[] {
  const s = new ResultsStore(db, { readonly: true })
  try {
    return s.all<any>('SELECT method, ratio, content_hash, calibration_json FROM variants ORDER BY method, ratio')
  } finally {
    s.close()
  }
}

/** Every complete run's metrics, as { metric: value }. */
function storedMetrics(): Record<string, number>[] {
  const s = new ResultsStore(db, { readonly: true })
  try {
    const rows = s.all<{ run_id: number; metric: string; value: number }>("SELECT r.run_id, m.metric, m.value FROM runs r JOIN metrics m ON m.run_id = r.run_id WHERE r.status = 'complete' ORDER BY r.run_id, m.metric")
    const runs = new Map<number, Record<string, number>>()
    for (const r of rows) runs.set(r.run_id, { ...runs.get(r.run_id), [r.metric]: r.value })
    return [...runs.values()]
  } finally {
    s.close()
  }
}

describe('ratio-0 variants need no calibration', () => {
  it('every built-in method declares no statistics at ratio 0; NAEE with dynamic skipping still reads routing', async () => {
    const ckpt = openCheckpoint(model.dir)
    for (const method of await loadAllMethods()) {
      const plan = await planVariant(ckpt, method.name, { ratio: 0 })
      assert.deepEqual([method.name, plan.needs, plan.onePassNeeds], [method.name, [], []])
    }
    assert.ok((await planVariant(ckpt, 'reap', { ratio: 0.5 })).needs.length > 0)
    assert.deepEqual((await planVariant(ckpt, 'naee', { ratio: 0, dynamicSkip: true })).needs, ['routing'])
  })

  it('a sweep of calibrating methods at ratio 0 runs no calibration and scores the unpruned model', () => {
    const { summary, stderr } = sweep('zero', CALIBRATING, [0])
    assert.equal(summary.failed, 0, stderr)
    assert.doesNotMatch(stderr, /^calibration for /m)
    assert.equal(summary.timings.calibration, 0)
    // One cell scored; the others are that same cell, and the summary says so (not "already complete" from an earlier run).
    assert.deepEqual([summary.cells, summary.completed, summary.skipped, summary.sameAsScoredHere], [CALIBRATING.length, 1, CALIBRATING.length - 1, CALIBRATING.length - 1])
    assert.match(stderr, new RegExp(`^sweep: 1 cell scored, ${CALIBRATING.length - 1} already complete \\(all the same variant as a cell scored in this sweep, e\\.g\\. each method at ratio 0\\)`, 'm'))
    assert.deepEqual(calibrationFiles(), [])
    const rows = variants()
    assert.deepEqual(rows.map(v => v.method), [...CALIBRATING].sort())
    for (const v of rows) {
      assert.ok(isBaselineContent(v.content_hash), `${v.method}: ${v.content_hash}`)
      assert.equal(JSON.parse(v.calibration_json ?? 'null'), null, v.method)
    }
    // One run for them all (the unpruned model's content), with the unpruned model's scores.
    const unpruned = runCli(['eval', '--model', model.dir, '--tasks', 'brown-cloze', '--limit', '6', '--threads', '1', '--json'], { env })
    assert.equal(unpruned.status, 0, unpruned.stderr)
    const { acc, acc_norm } = lastJson(unpruned.stdout).results['brown-cloze']
    assert.deepEqual(storedMetrics(), [{ acc, acc_norm }])
  })

  it('a later sweep over ratios [0, 0.5] calibrates once, for 0.5 only, and finds its ratio-0 cell scored', () => {
    const { summary, stderr } = sweep('mixed', ['reap'], [0, 0.5])
    assert.equal(summary.failed, 0, stderr)
    assert.deepEqual([summary.cells, summary.completed, summary.skipped, summary.sameAsScoredHere], [2, 1, 1, 0])
    assert.match(stderr, /^sweep: 1 cell scored, 1 already complete, 0 failed/m)
    assert.equal(stderr.match(/^calibration for m: computed \(routing, expertOutputs\)$/gm)?.length, 1, stderr)
    assert.equal(calibrationFiles().length, 1)
    const reap = variants().filter(v => v.method === 'reap')
    assert.deepEqual(reap.map(v => v.ratio), [0, 0.5])
    assert.equal(JSON.parse(reap[0].calibration_json ?? 'null'), null)
    assert.equal(JSON.parse(reap[1].calibration_json!).procedure, 'one-pass')
    assert.ok(!isBaselineContent(reap[1].content_hash))
  })
})

