// A model folder that vanishes during a sweep (a scratch purge, a moved checkpoint) fails that model's
// cells only: here it is removed right after the first model's calibration, so its own calibration
// fails (its calibration-needing variants fail at phase calibrate, naming the model) and its other
// variants fail when prepared or scored, while the first model is scored as in a sweep of it alone.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { parseConfig } from '../../src/config/defineConfig.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { runSweep } from '../../src/sweep/runSweep.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir, useHarnessHome } from '../helpers/tmp.ts'

describe('a model folder that vanishes during a sweep', () => {
  const dir = tmpDir()
  useHarnessHome(path.join(dir, 'home'))
  const tiny = { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8 } as const
  writeTinyCheckpoint(path.join(dir, 'kept'), { ...tiny, seed: 111 })
  writeTinyCheckpoint(path.join(dir, 'gone'), { ...tiny, seed: 112 })
  const config = (models: Record<string, string>) => parseConfig({
    models, methods: ['frequency-pruning', 'magnitude-pruning'], ratios: [0.5], tasks: ['brown-cloze'],
    subset: { limit: 3 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
  }, 'test config')
  const scores = (db: string) => {
    const s = new ResultsStore(db, { readonly: true })
    try {
      return s.all<{ model: string; method: string; metric: string; value: number }>(`SELECT m.name AS model, v.method, x.metric, x.value FROM runs r
        JOIN models m ON m.model_id = r.model_id JOIN variants v ON v.model_id = r.model_id AND v.content_hash = r.content_hash AND v.status = 'ready'
        JOIN metrics x ON x.run_id = r.run_id WHERE r.status = 'complete' ORDER BY 1, 2, 3`)
    } finally {
      s.close()
    }
  }

  it("fails the vanished model's cells and scores the other's", async () => {
    const alone = await runSweep({ config: config({ kept: 'kept' }), baseDir: dir, db: path.join(dir, 'alone.sqlite') })
    assert.equal(alone.completed, 2, JSON.stringify(alone.failures))
    const db = path.join(dir, 'both.sqlite')
    const lines: string[] = []
    const summary = await runSweep({
      config: config({ kept: 'kept', gone: 'gone' }), baseDir: dir, db,
      log: line => {
        lines.push(line)
        if (line.startsWith('calibration for kept:')) fs.rmSync(path.join(dir, 'gone'), { recursive: true })
      },
    })
    assert.ok(!fs.existsSync(path.join(dir, 'gone')), 'the folder was removed during the sweep')
    assert.equal(summary.completed, 2, JSON.stringify(summary.failures))
    assert.equal(summary.failed, 2)
    const byMethod = Object.fromEntries(summary.failures.map(f => [f.cell, f]))
    const calibrated = byMethod['gone frequency-pruning {"ratio":0.5} brown-cloze']!
    assert.equal(calibrated.phase, 'calibrate')
    assert.match(calibrated.message, /^model 'gone': .*gone/)
    assert.ok(byMethod['gone magnitude-pruning {"ratio":0.5} brown-cloze'], JSON.stringify(summary.failures))
    assert.ok(lines.some(l => l.startsWith('calibration for gone failed:')), lines.join('\n'))
    const kept = scores(db)
    assert.ok(kept.every(r => r.model === 'kept'))
    assert.deepEqual(kept, scores(path.join(dir, 'alone.sqlite')))
  })
})
