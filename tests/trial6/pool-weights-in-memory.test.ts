// MOE_HARNESS_WEIGHTS=memory makes every pool worker decode every weight to float32 in its own
// session, but the pool's memory plan counted the weights once, as mapped: on one full-width OLMoE
// layer (1.25 GB BF16) it said "2 workers ... = 10.0 GB fits" and the sweep peaked at 12.6 GB (3.0 GB
// mapped); on the whole 13.8 GB OLMoE it would plan 2 workers on 24 GB that need ~100 GB.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { estimateWorkerBytes, fitPoolToModels, MAIN_SESSIONS, sessionBytes, SESSIONS_PER_WORKER, worstBatch } from '../../src/pool/memoryFit.ts'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('the pool plan with MOE_HARNESS_WEIGHTS=memory', () => {
  const dir = tmpDir()
  const model = writeTinyCheckpoint(path.join(dir, 'm'), { family: 'olmoe', dtype: 'BF16', seed: 12 })
  const ckpt = openCheckpoint(model.dir)
  const elements = [...model.tensors.values()].reduce((n, t) => n + t.data.length, 0)

  it('counts each worker\'s float32 weights (twice, at peak) and says so', () => {
    const base = { models: [ckpt], batchTokens: 512, requestedWorkers: 2, cores: 2 }
    const worst = worstBatch(ckpt.spec, 512)
    const activations = estimateWorkerBytes(ckpt.spec, worst.rows, worst.rowTokens)
    const stored = 2 * elements // BF16
    // Room for two mapped workers (and their sessions), not for two holding their own float32 weights.
    const sessions = (MAIN_SESSIONS + 2 * SESSIONS_PER_WORKER) * sessionBytes(ckpt)
    const availableBytes = (stored + sessions + 2 * activations + 4 * elements) / 0.85
    const mapped = fitPoolToModels({ ...base, availableBytes })
    assert.equal(mapped.workers, 2, mapped.reason)
    const memory = fitPoolToModels({ ...base, availableBytes, weightsInMemory: true })
    assert.equal(memory.workers, 1, memory.reason)
    // The checkpoint is read once and decoded by each worker, not mapped and shared.
    assert.match(memory.reason, /model \S+ \S+ read once \+/)
    assert.match(mapped.reason, /model \S+ \S+ mapped once \+/)
    assert.match(memory.reason, /reduced from 2 requested workers .* per worker \(its own float32 weights, MOE_HARNESS_WEIGHTS=memory, and activations\)/)
    const perWorker = Number(/\+ 2 x (\d+) MB per worker/.exec(memory.reason)?.[1] ?? NaN)
    assert.equal(perWorker, Math.round((activations + 8 * elements) / 1e6), memory.reason)
  })

  it('is what a sweep prints when the variable is set', () => {
    const config = writeSweepConfig(path.join(dir, 'harness.config.ts'), {
      models: { m: model.dir }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 1 },
      calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 }, store: path.join(dir, 'r.sqlite'),
    })
    const r = runCli(['sweep', '--config', config], { env: { MOE_HARNESS_HOME: path.join(dir, 'home'), MOE_HARNESS_WEIGHTS: 'memory' }, timeoutMs: 60_000 })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stderr, /^pool: 1 worker x 1 thread \(model .* per worker \(its own float32 weights, MOE_HARNESS_WEIGHTS=memory, and activations\)/m)
  })
})
