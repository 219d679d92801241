// The sweep's summary line gives the share of the sweep the workers spent scoring, from the same
// timings as --json; the parts outside scoring are listed, not summed into a share (they overlap:
// workers build sessions while the main thread prepares the next variant, and their sum had read
// "114.5% of the sweep" in a fresh-user trial with two workers and weight-editing methods).
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('sweep summary line', () => {
  it('states the scoring share of the sweep as --json timings give it, at most 100%', () => {
    const dir = tmpDir()
    writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed: 9 })
    const file = path.join(dir, 'c.config.ts')
    const body = {
      models: { m: 'model' }, methods: [{ method: 'magnitude-pruning', params: { score: 'wanda' } }, 'hc-smoe'], ratios: [0.25, 0.5],
      tasks: ['brown-cloze'], subset: { sample: 3 }, calibration: { sequences: 4, length: 64 }, pool: { workers: 2, threads: 1 },
    }
    writeSweepConfig(file, body)
    const r = runCli(['sweep', '--config', file, '--db', path.join(dir, 'r.sqlite'), '--json'], { env: { MOE_HARNESS_HOME: path.join(dir, 'home'), MOE_HARNESS_SPILL_MB: '0' } })
    assert.equal(r.status, 0, r.stderr)
    const { timings: t, pool, completed } = lastJson(r.stdout)
    assert.equal(completed, 4)
    const m = /onnxruntime scoring ([\d.]+) s per worker = ([\d.]+)% of the sweep; outside scoring \(overlapping\): calibration [\d.]+ s, transforms [\d.]+ s, session builds [\d.]+ s per worker, database [\d.]+ s/.exec(r.stderr)
    assert.ok(m, r.stderr)
    const share = Number(m[2])
    assert.ok(share > 0 && share <= 100, `${share}%`)
    assert.ok(Math.abs(share - (100 * t.scoring) / pool.workers / t.total) < 0.051, `${share} vs ${JSON.stringify(t)}`)
    assert.ok(Math.abs(Number(m[1]) - t.scoring / pool.workers) < 0.051)
  })
})
