// Fresh-user trial 5: a value listed twice in harness.config.ts (ratios [0.5, 0.5], a method entry
// repeated, a grid value repeated) planned each copy as cells of their own: a sweep of 2 distinct cells
// said "cells: 8, skipped: 6". Now a repeated value is one variant.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { parseConfig } from '../../src/config/defineConfig.ts'
import { expandVariants } from '../../src/sweep/plan.ts'
import { lastJson, ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const model = path.join(ROOT, 'models/tiny-moe')

describe('repeated values in a sweep config', () => {
  it('expand to one variant each', async () => {
    const config = parseConfig({
      models: { tiny: model }, ratios: [0.5, 0.25, 0.5],
      methods: ['reap', 'reap', { method: 'frequency-pruning', params: { scope: ['layer', 'layer', 'global'] } }],
    }, 'test config')
    const specs = await expandVariants(config, ROOT)
    assert.deepEqual(specs.map(s => `${s.method} ${JSON.stringify(s.params)}`), [
      'reap {"ratio":0.5}', 'reap {"ratio":0.25}',
      'frequency-pruning {"scope":"layer","ratio":0.5}', 'frequency-pruning {"scope":"layer","ratio":0.25}',
      'frequency-pruning {"scope":"global","ratio":0.5}', 'frequency-pruning {"scope":"global","ratio":0.25}',
    ])
  })

  it('a sweep counts and scores each distinct cell once', () => {
    const dir = tmpDir()
    const file = writeSweepConfig(path.join(dir, 'harness.config.ts'), {
      models: { tiny: model }, methods: ['reap', 'reap'], ratios: [0.5, 0.5], tasks: ['brown-agreement'],
      subset: { limit: 4 }, calibration: { sequences: 2, length: 32 }, pool: { workers: 1, threads: 1 }, store: 'results.sqlite',
    })
    const r = runCli(['sweep', '--config', file, '--json'], { cwd: dir, env: { MOE_HARNESS_HOME: path.join(dir, 'home') } })
    assert.equal(r.status, 0, r.stderr)
    const summary = lastJson(r.stdout)
    assert.deepEqual([summary.cells, summary.completed, summary.skipped, summary.failed], [1, 1, 0, 0])
  })
})
