// The leaderboard's tokens/s is a scoring throughput. A run's seconds are its cell's wall time, which
// includes the time the pool's workers spent opening the variant's onnxruntime session; variants that
// only remove experts share one session, so whichever was scored first carried the whole build (on a
// 48-layer, 128-expert site the unpruned row showed 46 tokens/s against 660-799 for the pruned rows
// that reused its session). Each run now stores that part (runs.session_seconds) and the leaderboard
// divides the tokens by the seconds without it. A real sweep on the built-in tiny model, one worker,
// so the cells run one after another in the worker that keeps the sessions.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { parseCsv } from '../helpers/csv.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const config = writeSweepConfig(path.join(dir, 'throughput.config.ts'), {
  models: { tiny: path.join(ROOT, 'models/tiny-moe') },
  // frequency-pruning only masks experts: it shares the unpruned model's session. neuron-top-k edits
  // weights: a session of its own (or one shared per edited tensors), built when its first cell is scored.
  methods: ['frequency-pruning', 'neuron-top-k'],
  ratios: [0, 0.5],
  tasks: ['brown-cloze', 'brown-agreement'],
  subset: { limit: 8 },
  calibration: { sequences: 2, length: 16 },
  pool: { workers: 1, threads: 1 },
})
const db = path.join(dir, 'results.sqlite')
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

interface Run { run_id: number; content_hash: string; task: string; seconds: number; session_seconds: number | null; tokens_processed: number }

describe('tokens/s without session opening', () => {
  const sweep = runCli(['sweep', '--config', config, '--db', db, '--json'], { env })

  it('stores, per run, the seconds spent opening the session: the first cell of a session pays, the cells that reuse it do not', () => {
    assert.equal(sweep.status, 0, sweep.stderr)
    const store = new ResultsStore(db, { readonly: true })
    let runs: Run[], methodOf: Map<string, string>
    try {
      runs = store.all<Run>(`SELECT * FROM runs WHERE status = 'complete' ORDER BY run_id`)
      methodOf = new Map(store.all<{ content_hash: string; method: string; ratio: number }>(`SELECT content_hash, method, ratio FROM variants WHERE status = 'ready'`)
        .map(v => [v.content_hash, v.ratio === 0 ? 'unpruned' : v.method]))
      // The typed read the leaderboard uses carries the same figure.
      const typed = store.storedModels().flatMap(m => store.completeRuns(m.id))
      assert.deepEqual(typed.map(r => [r.runId, r.sessionSeconds]).sort((a, b) => Number(a[0]) - Number(b[0])), runs.map(r => [r.run_id, r.session_seconds]))
    } finally {
      store.close()
    }
    // Unpruned (ratio 0, one model for both methods), frequency-pruning and neuron-top-k at 0.5, two tasks each.
    assert.equal(runs.length, 6)
    for (const r of runs) {
      assert.equal(typeof r.session_seconds, 'number', `run ${r.run_id} recorded its session seconds`)
      assert.ok(r.session_seconds! >= 0 && r.session_seconds! < r.seconds, `run ${r.run_id}: ${r.session_seconds} s of ${r.seconds} s`)
    }
    // The first of them opened the expert-mask session every mask-only variant shares.
    const masks = runs.filter(r => methodOf.get(r.content_hash) !== 'neuron-top-k')
    assert.equal(masks.length, 4)
    assert.ok(masks[0].session_seconds! > 0, `the first cell built the session: ${JSON.stringify(masks[0])}`)
    for (const r of masks.slice(1)) assert.equal(r.session_seconds, 0, `${methodOf.get(r.content_hash)} ${r.task} reused the session`)
    // neuron-top-k's first cell built its own; its second task reused it.
    const nt = runs.filter(r => methodOf.get(r.content_hash) === 'neuron-top-k')
    assert.equal(nt.length, 2)
    assert.ok(nt[0].session_seconds! > 0, `neuron-top-k's first cell built its session: ${JSON.stringify(nt[0])}`)
    assert.equal(nt[1].session_seconds, 0)
  })

  it("the leaderboard's tokens/s (site, JSON, CSV) is tokens / (seconds - session seconds) over the row's runs", () => {
    assert.equal(sweep.status, 0, sweep.stderr)
    const site = path.join(dir, 'site')
    const report = runCli(['report', '--db', db, '--out', site])
    assert.equal(report.status, 0, report.stderr)
    const store = new ResultsStore(db, { readonly: true })
    const expected = new Map<string, { scoring: number; wall: number }>()
    try {
      const [model] = store.storedModels()
      const runs = store.completeRuns(model.id)
      for (const v of store.storedVariants(model.id)) {
        if (v.status !== 'ready') continue
        const mine = runs.filter(r => r.contentHash === v.contentHash)
        const tokens = mine.reduce((a, r) => a + r.tokensProcessed, 0)
        const seconds = mine.reduce((a, r) => a + r.seconds, 0)
        const session = mine.reduce((a, r) => a + r.sessionSeconds!, 0)
        expected.set(v.variantId, { scoring: tokens / (seconds - session), wall: tokens / seconds })
      }
    } finally {
      store.close()
    }
    const data = JSON.parse(fs.readFileSync(path.join(site, 'leaderboard.json'), 'utf8'))
    const rows = data.models[0].rows as { variantId: string; method: string; tokensPerSecond: number }[]
    assert.equal(rows.length, 3)
    for (const r of rows) {
      const e = expected.get(r.variantId)!
      assert.ok(Math.abs(r.tokensPerSecond - e.scoring) <= 1e-9 * e.scoring, `${r.method}: ${r.tokensPerSecond} vs ${e.scoring}`)
    }
    // The row whose cell opened the shared session is no longer charged for it: its figure rose.
    const unpruned = rows.find(r => r.method === 'unpruned')!
    assert.ok(unpruned.tokensPerSecond > expected.get(unpruned.variantId)!.wall * 1.01, `unpruned ${unpruned.tokensPerSecond} tokens/s, wall-time figure ${expected.get(unpruned.variantId)!.wall}`)
    const csv = parseCsv(fs.readFileSync(path.join(site, 'leaderboard.csv'), 'utf8'))
    assert.equal(csv.length, 3)
    for (const line of csv) {
      const e = expected.get(line.variant_id)!
      assert.ok(Math.abs(Number(line.tokens_per_second) - e.scoring) <= 1e-9 * e.scoring, `CSV ${line.variant_id}: ${line.tokens_per_second} vs ${e.scoring}`)
    }
    assert.match(fs.readFileSync(path.join(site, 'index.html'), 'utf8'), /<th title="scoring throughput: [^"]*session is left out[^"]*">tokens\/s<\/th>/)
  })

  it('with two workers, two cells of a variant scored at once (two lanes) both count the start-up and build they waited for', () => {
    const two = writeSweepConfig(path.join(dir, 'two.config.ts'), {
      models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze', 'brown-agreement'],
      subset: { limit: 8 }, pool: { workers: 2, threads: 1 },
    })
    const file = path.join(dir, 'two.sqlite')
    const r = runCli(['sweep', '--config', two, '--db', file, '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    const store = new ResultsStore(file, { readonly: true })
    try {
      const runs = store.all<Run>(`SELECT * FROM runs WHERE status = 'complete' ORDER BY run_id`)
      assert.equal(runs.length, 2)
      // Only one of them sent the batches that started the workers and built the session; the other
      // waited all the same (its batches queued behind them), so its wall time holds that wait too.
      for (const run of runs) assert.ok(run.session_seconds! > 0 && run.session_seconds! < run.seconds, `${run.task}: ${run.session_seconds} s of ${run.seconds} s`)
    } finally {
      store.close()
    }
  })
})
