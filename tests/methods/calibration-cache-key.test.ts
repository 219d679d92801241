// A calibration cache entry is used only under the key it was computed for: a file copied between
// models (or settings) must be recomputed, not handed to another model's method.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { calibrationKey, getCalibrationStats } from '../../src/calibration/cache.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const calibration = { source: 'builtin', sequences: 2, length: 16, seed: 5 }
const engine = { device: 'cpu' as const, threads: 1 }

describe('the calibration cache', () => {
  it('recomputes an entry whose recorded key is not its file name, with a warning', async () => {
    const dir = tmpDir()
    const shape = { family: 'mixtral' as const, experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16 }
    writeTinyCheckpoint(path.join(dir, 'a'), { ...shape, seed: 11 })
    writeTinyCheckpoint(path.join(dir, 'b'), { ...shape, seed: 12 })
    const a = openCheckpoint(path.join(dir, 'a')), b = openCheckpoint(path.join(dir, 'b'))
    const cacheDir = path.join(dir, 'home')
    const fileOf = async (c: typeof a) => path.join(cacheDir, 'calibration', `${await calibrationKey(c, calibration)}.v8`)
    const ofA = await getCalibrationStats(a, calibration, ['routing'], { ...engine, cacheDir })
    const ofB = await getCalibrationStats(b, calibration, ['routing'], { ...engine, cacheDir })
    assert.notDeepEqual(ofA.data.routing![0]!.count, ofB.data.routing![0]!.count, 'two seeds route differently')
    fs.copyFileSync(await fileOf(a), await fileOf(b))
    const warnings: string[] = []
    const write = process.stderr.write.bind(process.stderr)
    process.stderr.write = ((chunk: string) => (warnings.push(String(chunk)), true)) as typeof process.stderr.write
    let again
    try {
      again = await getCalibrationStats(b, calibration, ['routing'], { ...engine, cacheDir })
    } finally {
      process.stderr.write = write
    }
    assert.equal(again.fromCache, false)
    assert.deepEqual(again.data.routing![0]!.count, ofB.data.routing![0]!.count)
    assert.match(warnings.join(''), new RegExp(`damaged calibration cache .*holds the statistics of key ${ofA.key}, not ${ofB.key}`))
    // The recomputed entry replaced the foreign one and is used from now on.
    assert.equal((await getCalibrationStats(b, calibration, ['routing'], { ...engine, cacheDir })).fromCache, true)
  })
})
