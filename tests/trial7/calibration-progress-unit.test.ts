// Fresh-user trial 7: progress bars say what they count. Found: the calibration bar read "0/24" with no
// unit (24 = 8 sequences x 3 MoE layers when statistics are collected layer by layer, 8 sequences in one
// whole pass), and a task's bar counted documents, a sweep's cells, without saying so.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { collectStats } from '../../src/calibration/collect.ts'
import type { StatNeed } from '../../src/calibration/stats.ts'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', layers: 3, experts: 4, topK: 2, hidden: 16, ffn: 8, seed: 23 })
const needs: StatNeed[] = ['routing']
const windows = Array.from({ length: 5 }, (_, i) => Array.from({ length: 8 }, (_, j) => (i * 8 + j) % 200))

describe('calibration progress', () => {
  for (const layered of [false, true]) {
    it(`collectStats reports its unit (${layered ? 'layer by layer: sequences x MoE layers, and the layer' : 'one whole pass: sequences'})`, async () => {
      const calls: { done: number; total: number; unit?: string; detail?: string }[] = []
      await collectStats(openCheckpoint(model.dir), windows, needs, { key: 't', needs, sequences: 5, length: 8, source: 'test' },
        { device: 'cpu', threads: 1, batchTokens: 16, edits: emptyEdits(), cacheDir: path.join(dir, 'home'), layered, onProgress: (done, total, what) => calls.push({ done, total, ...what }) })
      const last = calls[calls.length - 1]
      if (layered) {
        assert.deepEqual(last, { done: 15, total: 15, unit: 'sequences × MoE layers', detail: 'MoE layer 3 of 3' })
        assert.deepEqual(calls[0], { done: 2, total: 15, unit: 'sequences × MoE layers', detail: 'MoE layer 1 of 3' })
      } else {
        assert.deepEqual(calls.map(c => c.done), [2, 4, 5])
        assert.deepEqual(last, { done: 5, total: 5, unit: 'sequences' })
      }
    })
  }

  const env = { MOE_HARNESS_HOME: path.join(dir, 'cli-home') }
  const evalWith = (...method: string[]) => runCli(['eval', '--model', model.dir, '--tasks', 'brown-cloze', '--limit', '2', '--threads', '1',
    '--calibration-sequences', '4', '--calibration-length', '16', ...method], { env })

  it('eval with a one-pass method: the calibration bar counts sequences, the task bar documents', () => {
    const r = evalWith('--method', 'frequency-pruning', '--ratio', '0.25')
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stderr, /calibration +█+ 4\/4 sequences \|/)
    assert.match(r.stderr, /brown-cloze +█+ 2\/2 documents \| \d+\/\d+ requests \|/)
  })

  it('eval with a sequential method: sequences x MoE layers, naming the layer', () => {
    const r = evalWith('--method', 'magnitude-pruning', '--param', 'score=wanda', '--ratio', '0.5')
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stderr, /calibration +█+ 12\/12 sequences × MoE layers \| MoE layer 3 of 3 \|/)
  })

  // A sweep's calibration label ("calibrating m 4/4 sequences") is asserted in tests/trial6/sweep-interrupt-calibration.test.ts.
  it('a sweep counts cells', () => {
    const cwd = tmpDir()
    const config = writeSweepConfig(path.join(cwd, 'c.config.ts'), {
      models: { m: model.dir }, methods: ['frequency-pruning'], ratios: [0.25], tasks: ['brown-cloze'], subset: { limit: 2 },
      calibration: { sequences: 4, length: 16 }, pool: { workers: 1, threads: 1 },
    })
    const r = runCli(['sweep', '--config', config], { env, cwd })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stderr, /\nsweep █+ 1\/1 cells \| m frequency-pruning r=0\.25 brown-cloze \|/)
  })
})
