// Fresh-user trial 4: shards (sweep --shard i/n, the array tasks of sweep --slurm) each scored the
// unpruned model again. Every method's ratio-0 cell is the unpruned model, which a single process
// scores once (runs are keyed by the edits' content hash), but the cells were hashed to shards by
// method, so up to one shard per method scored it. Now a model's ratio-0 cells of a task share a shard.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { cellKey, shardOf, shardOfCell } from '../../src/sweep/plan.ts'

const dir = tmpDir()
const methods = ['frequency-pruning', 'reap', 'ean', 'neuron-top-k']
const config = path.join(dir, 'harness.config.ts')
fs.writeFileSync(config, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
  models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods, ratios: [0, 0.5], tasks: ['brown-cloze'],
  subset: { limit: 4 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
})})\n`)
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

describe('shards and the unpruned model', () => {
  it('hashing by method alone would spread these ratio-0 cells over several shards (the case is meaningful)', () => {
    const byMethod = new Set(methods.map(m => shardOf(cellKey({ model: 'tiny', method: m, params: { ratio: 0 } }, 'brown-cloze'), 3)))
    assert.ok(byMethod.size > 1, `all in shard ${[...byMethod]}`)
    const now = new Set(methods.map(m => shardOfCell({ model: 'tiny', method: m, params: { ratio: 0 } }, 'brown-cloze', 3)))
    assert.equal(now.size, 1)
    // Other ratios still spread by method.
    assert.ok(new Set(methods.map(m => shardOfCell({ model: 'tiny', method: m, params: { ratio: 0.5 } }, 'brown-cloze', 3))).size > 1)
  })

  it('three shards score the unpruned model once, as one process does, and together hold every cell', () => {
    const whole = runCli(['sweep', '--config', config, '--db', path.join(dir, 'whole.sqlite'), '--json'], { env })
    assert.equal(whole.status, 0, whole.stderr)
    const single = lastJson(whole.stdout)
    assert.equal(single.cells, 8)
    assert.equal(single.completed, 5, 'one process: 4 pruned variants + the unpruned model once')
    let cells = 0, scored = 0
    for (let i = 0; i < 3; i++) {
      const r = runCli(['sweep', '--config', config, '--shard', `${i}/3`, '--db', path.join(dir, `shard${i}.sqlite`), '--json'], { env })
      assert.equal(r.status, 0, r.stderr)
      const s = lastJson(r.stdout)
      cells += s.cells
      scored += s.completed
    }
    assert.equal(cells, 8, 'the shards split every cell')
    assert.equal(scored, single.completed, 'no shard scored the unpruned model a second time')
  })
})
