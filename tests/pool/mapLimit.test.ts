// The pool also fits the kernel's per-process mapping limit (vm.max_map_count): onnxruntime maps each
// weight tensor once per session, every pool worker is a thread of one process, and past the limit the
// process aborts with a misleading "JavaScript heap out of memory" (a Qwen3-30B-A3B-shaped sweep at
// --workers 2 died at 64,560 mappings). The limit is an input here; the estimate is checked against a
// real session's /proc/self/maps.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { REAL, tinyWidth, writeCheckpoint } from '../../bench/syntheticCheckpoint.ts'
import { openGraphSession } from '../../src/engine/graphSession.ts'
import { HarnessError } from '../../src/errors.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import {
  fitPool, fitPoolToModels, MAIN_SESSIONS, MAP_SAFETY, mapsFit, MAPS_PER_SESSION_EXTRA, SESSIONS_PER_WORKER, sessionMapCount, WORKER_BASE_MAPS,
} from '../../src/pool/memoryFit.ts'
import { MAP_COUNT_FIX, mapCount, mapCountLimit, nearMapLimit } from '../../src/util/memoryMaps.ts'
import { tmpDir } from '../helpers/tmp.ts'

const GB = 1e9
// Qwen3-30B-A3B: 3 + 48 × (8 + 128 × 3) = 18,867 weight tensors; DeepSeek-V3 (58 MoE layers × 256 experts) about 45,000.
const QWEN3_TENSORS = 18_867
const ample = { cores: 2, availableBytes: 100 * GB, modelBytes: 1 * GB, perWorkerBytes: 1 * GB }

describe('mapsFit', () => {
  it('counts one mapping per tensor per session, two sessions per worker and the main process\'s own', () => {
    assert.deepEqual([SESSIONS_PER_WORKER, MAIN_SESSIONS, MAP_SAFETY, WORKER_BASE_MAPS, MAPS_PER_SESSION_EXTRA], [2, 1, 0.9, 1000, 100])
    const s = QWEN3_TENSORS + MAPS_PER_SESSION_EXTRA // 18,967
    // 0.9 × 65,530 = 58,977; - 500 in use - 18,967 (calibration) = 39,510; a worker needs 2 × 18,967 + 1000 = 38,934: one.
    assert.equal(mapsFit({ mapLimit: 65_530, mapsPerSession: s, mapsInUse: 500 }), 1)
    // The sysctl's 262,144: (235,929.6 - 500 - 18,967) / 38,934 = 5.56.
    assert.equal(mapsFit({ mapLimit: 262_144, mapsPerSession: s, mapsInUse: 500 }), 5)
    // DeepSeek-V3's shape: not even one worker under the default limit.
    assert.equal(mapsFit({ mapLimit: 65_530, mapsPerSession: 45_100, mapsInUse: 500 }), 0)
    // Boundary: 0.9 × 10,000 = 9000 = 1000 + 1000 (main) + 3 × (2 × 1000 + 1000) - 1000 → 2 workers; at 3 workers 11,000 > 9000.
    assert.equal(mapsFit({ mapLimit: 10_000, mapsPerSession: 1000, mapsInUse: 1000 }), 2)
    assert.equal(mapsFit({ mapLimit: 10_000, mapsPerSession: 1000, mapsInUse: 1001 }), 2)
    assert.equal(mapsFit({ mapLimit: 10_000, mapsPerSession: 1000, mapsInUse: 5001 }), 0)
    assert.equal(mapsFit({ mapLimit: 10_000, mapsPerSession: 1000, mapsInUse: 5000 }), 1)
    // No limit known (not Linux), or nothing mapped: no cap.
    assert.equal(mapsFit({ mapsPerSession: s }), Infinity)
    assert.equal(mapsFit({ mapLimit: 65_530, mapsPerSession: 0 }), Infinity)
  })
})

describe('fitPool with a mapping limit', () => {
  it('caps the workers by mappings and says so in the pool line, naming vm.max_map_count and the sysctl', () => {
    const fit = fitPool({ ...ample, requestedWorkers: 2, mapLimit: 65_530, mapsPerSession: QWEN3_TENSORS + 100, mapsInUse: 500 })
    assert.deepEqual([fit.workers, fit.threads, fit.fits, fit.reduced, fit.mapWorkers], [1, 2, true, true, 1])
    assert.equal(fit.reason, 'pool: 1 worker x 2 threads, reduced from 2 requested workers because 2 would need 97335 memory mappings (500 in use + 5 sessions x 18967 mappings, one per weight tensor, + 2 x 1000 per worker thread), over 90% of the kernel\'s per-process limit vm.max_map_count 65530 (pool workers are threads of one process), not for memory or cores; 58401 memory mappings (500 in use + 3 sessions x 18967 mappings, one per weight tensor, + 1 x 1000 per worker thread) fit; for more workers raise the limit: sudo sysctl -w vm.max_map_count=262144 (persist it in /etc/sysctl.d/)')
    // The memory cap applies first; mappings only where they cap more.
    const both = fitPool({ ...ample, availableBytes: 4 * GB, requestedWorkers: 4, mapLimit: 65_530, mapsPerSession: 18_967, mapsInUse: 500 })
    assert.equal(both.workers, 1)
    assert.match(both.reason, /reduced from 4 requested workers because 2 would need .* vm\.max_map_count 65530/)
    // Memory alone caps at 2 (1 + 2 × 1 <= 3.4 GB): the line is the memory one, unchanged.
    const memory = fitPool({ ...ample, availableBytes: 4 * GB, requestedWorkers: 4, mapLimit: 262_144, mapsPerSession: 18_967, mapsInUse: 500 })
    assert.equal(memory.workers, 2)
    assert.doesNotMatch(memory.reason, /max_map_count/)
    assert.match(memory.reason, /exceeds 85% of 4\.00 GB available/)
    // Without a limit: exactly the memory plan.
    assert.deepEqual(fitPool({ ...ample, requestedWorkers: 2, mapsPerSession: 18_967 }), { ...fitPool({ ...ample, requestedWorkers: 2 }) })
  })

  it('when not even one worker fits: mapWorkers 0, fits false, and the reason names the limit and the fix', () => {
    const fit = fitPool({ ...ample, requestedWorkers: 1, mapLimit: 65_530, mapsPerSession: 45_100, mapsInUse: 500 })
    assert.deepEqual([fit.workers, fit.fits, fit.mapWorkers], [1, false, 0])
    assert.match(fit.reason, /^pool: 1 worker x 2 threads: even 1 worker does not fit: 136800 memory mappings .* exceed 90% of the kernel's per-process limit vm\.max_map_count 65530 .*JavaScript heap out of memory.*sudo sysctl -w vm\.max_map_count=262144/)
  })
})

describe('fitPoolToModels and a real many-expert checkpoint', () => {
  let ckpt: Checkpoint
  const dir = path.join(tmpDir('map-limit-'), 'qwen3-4')
  before(async () => {
    // Qwen3-30B-A3B's routing (128 experts, 3 tensors each) at tiny width, 4 layers: 1575 tensors.
    await writeCheckpoint(dir, { ...tinyWidth(REAL.qwen3!.config), num_hidden_layers: 4, max_window_layers: 4 }, 7)
    ckpt = openCheckpoint(dir)
  })

  it('estimates a session from the tensor count and refuses with MAP_LIMIT when one worker cannot fit', () => {
    assert.equal(ckpt.tensors.size, 1575)
    assert.equal(sessionMapCount(ckpt), 1675)
    const plan = (mapLimit: number | null) => fitPoolToModels({ models: [ckpt], batchTokens: 256, requestedWorkers: 4, availableBytes: 100 * GB, cores: 4, mapLimit, mapsInUse: 300 })
    // (0.9 × 20,000 - 300 - 1675) / (2 × 1675 + 1000) = 3.68.
    assert.equal(plan(20_000).workers, 3)
    assert.match(plan(20_000).reason, /reduced from 4 requested workers because 4 would need 19375 memory mappings \(300 in use \+ 9 sessions x 1675/)
    assert.equal(plan(null).workers, 4)
    // (2700 - 300 - 1675) < 4350: refused, before any calibration (runSweep calls this first).
    assert.throws(() => plan(3000), (e: unknown) => {
      assert.ok(e instanceof HarnessError)
      assert.equal(e.code, 'MAP_LIMIT')
      assert.match(e.message, /^no scoring worker can start: 6325 memory mappings \(300 in use \+ 3 sessions x 1675 mappings.* vm\.max_map_count 3000 .*sudo sysctl -w vm\.max_map_count=262144/)
      return true
    })
  })

  it('a real session maps about one range per tensor, within the estimate', async () => {
    const count = () => mapCount()!
    if (mapCount() === undefined) return // not Linux: nothing to measure
    const open = () => openGraphSession(ckpt, { layers: {}, overrides: {} }, {}, { device: 'cpu', threads: 1 })
    const t0 = count()
    const first = await open()
    const t1 = count()
    const second = await open()
    const t2 = count()
    try {
      // Measured (onnxruntime-node 1.30): the first 1664 (its thread pool and arena too), the second 1576.
      const firstAdded = t1 - t0, secondAdded = t2 - t1
      assert.ok(secondAdded >= ckpt.tensors.size, `a second session added ${secondAdded} mappings, fewer than the ${ckpt.tensors.size} tensors`)
      assert.ok(secondAdded <= sessionMapCount(ckpt), `a second session added ${secondAdded} mappings, more than the estimate ${sessionMapCount(ckpt)}`)
      assert.ok(firstAdded <= sessionMapCount(ckpt) + WORKER_BASE_MAPS, `the first session added ${firstAdded} mappings, more than the estimate and a worker's base`)
    } finally {
      await first.release()
      await second.release()
    }
  })
})

describe('memoryMaps', () => {
  it('reads the limit and the count from their files, and tolerates their absence', () => {
    const dir = tmpDir('map-files-')
    const limitFile = path.join(dir, 'max_map_count'), mapsFile = path.join(dir, 'maps')
    fs.writeFileSync(limitFile, '65530\n')
    fs.writeFileSync(mapsFile, 'a\nb\nc\n')
    assert.equal(mapCountLimit({ limitFile }), 65_530)
    assert.equal(mapCount({ mapsFile }), 3)
    fs.writeFileSync(mapsFile, 'a\nb')
    assert.equal(mapCount({ mapsFile }), 2)
    assert.equal(mapCountLimit({ limitFile: path.join(dir, 'none') }), undefined)
    assert.equal(mapCount({ mapsFile: path.join(dir, 'none') }), undefined)
    if (fs.existsSync('/proc/self/maps')) assert.ok(mapCount()! > 10)
  })

  it('blames the mappings only near the limit, with both figures and the fix', () => {
    assert.equal(nearMapLimit({ count: 52_000, limit: 65_530 }), undefined) // below 80%
    assert.equal(nearMapLimit({ count: 64_560 }), undefined) // no limit known
    assert.ok(nearMapLimit({ count: 52_424, limit: 65_530 }))
    const said = nearMapLimit({ count: 64_560, limit: 65_530 })!
    assert.match(said, /holds 64560 memory mappings of the kernel's vm\.max_map_count 65530/)
    assert.ok(said.includes(MAP_COUNT_FIX))
    assert.doesNotMatch(said, /max-old-space-size/)
  })
})
