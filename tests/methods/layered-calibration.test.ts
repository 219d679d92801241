// One-pass calibration layer by layer (collect.ts collectLayered, chosen when a whole pass's outputs
// would not fit) gives the statistics of the whole pass: same operations, same residual stream.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { collectStats } from '../../src/calibration/collect.ts'
import { ALL_NEEDS, type StatsData } from '../../src/calibration/stats.ts'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { mulberry32 } from '../../src/util/rng.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()

/** Largest |a - b| / max(1, |b|) over every number in two statistics objects (info.seconds aside); throws on a shape difference. */
function worstDifference(a: unknown, b: unknown, where = ''): number {
  if (typeof a === 'number' && typeof b === 'number') {
    if (Number.isNaN(a) && Number.isNaN(b)) return 0
    return Math.abs(a - b) / Math.max(1, Math.abs(b))
  }
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) return worstDifference(Array.from(a as Float64Array), Array.from(b as Float64Array), where)
  if (Array.isArray(a) && Array.isArray(b)) {
    assert.equal(a.length, b.length, `${where}: lengths`)
    return a.reduce((m: number, x, i) => Math.max(m, worstDifference(x, b[i], `${where}[${i}]`)), 0)
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const keys = Object.keys(a).filter(k => k !== 'seconds')
    assert.deepEqual(keys.sort(), Object.keys(b).filter(k => k !== 'seconds').sort(), `${where}: keys`)
    return keys.reduce((m, k) => Math.max(m, worstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${where}.${k}`)), 0)
  }
  assert.deepEqual(a, b, where)
  return 0
}

const models: [string, () => string][] = [
  ['Qwen3-MoE BF16, 3 layers', () => {
    const d = path.join(dir, 'qwen3')
    writeTinyCheckpoint(d, { family: 'qwen3_moe', dtype: 'BF16', hidden: 32, heads: 4, kvHeads: 2, experts: 8, topK: 2, ffn: 12, layers: 3, seed: 9 })
    return d
  }],
  ['DeepSeek-V2 (first layer dense, shared experts)', () => {
    const d = path.join(dir, 'dsv2')
    writeTinyDeepseek(d, { version: 'v2', experts: 8, topK: 2, layers: 3, firstKDenseReplace: 1, seed: 4 })
    return d
  }],
]

describe('one-pass calibration layer by layer', () => {
  for (const [name, write] of models) {
    it(`${name}: every statistic equals the whole pass's`, async () => {
      const ckpt = openCheckpoint(write(), { warn: () => {} })
      const rng = mulberry32(3)
      const windows = Array.from({ length: 5 }, () => Array.from({ length: 24 }, () => Math.floor(rng() * ckpt.spec.vocabSize)))
      const needs = [...ALL_NEEDS]
      const info = { key: 'test', needs, sequences: 5, length: 24, source: 'random' }
      const options = { device: 'cpu' as const, threads: 1, batchTokens: 48, sampleTokens: 40, edits: emptyEdits(), cacheDir: path.join(dir, 'home') }
      const whole: StatsData = await collectStats(ckpt, windows, needs, info, { ...options, layered: false })
      const layered: StatsData = await collectStats(ckpt, windows, needs, info, { ...options, layered: true })
      assert.equal(layered.info.tokens, whole.info.tokens)
      const worst = worstDifference(layered, whole)
      assert.ok(worst < 1e-5, `largest relative difference ${worst}`)
    })
  }
})
