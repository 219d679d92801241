// A calibration cache that cannot be written (read-only or full harness home; here a file stands
// where its folder should be, which fails for root too) costs only the reuse: one warning, and the
// statistics and the variant are exactly those of a run with a working cache.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { contentHash } from '../../src/edits/variantEdits.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { planVariant, prepareVariant } from '../../src/variants/prepare.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const ckpt = openCheckpoint(writeTinyCheckpoint(path.join(dir, 'mixtral'), { family: 'mixtral', experts: 6, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 81 }).dir)
const calibration = { source: 'builtin', sequences: 4, length: 32, seed: 5 }

async function prepare(home: string, method: string, params: Record<string, string | number>) {
  const saved = process.env.MOE_HARNESS_HOME
  process.env.MOE_HARNESS_HOME = home
  const warnings: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string) => { warnings.push(String(chunk)); return true }) as typeof process.stderr.write
  try {
    const v = await prepareVariant(ckpt, await planVariant(ckpt, method, params), { calibration, device: 'cpu', threads: 1 })
    return { hash: contentHash(v.edits), warnings }
  } finally {
    process.stderr.write = write
    process.env.MOE_HARNESS_HOME = saved
  }
}

describe('an unwritable calibration cache', () => {
  for (const [method, params] of [['frequency-pruning', { ratio: 0.5 }], ['magnitude-pruning', { ratio: 0.5, score: 'wanda' }]] as const) {
    it(`${method} (${'score' in params ? 'sequential' : 'one-pass'}): warns once and prepares the same variant`, async () => {
      const good = await prepare(path.join(dir, `home-good-${method}`), method, params)
      const blocked = path.join(dir, `home-blocked-${method}`)
      fs.mkdirSync(blocked)
      fs.writeFileSync(path.join(blocked, 'calibration'), 'not a folder')
      const bad = await prepare(blocked, method, params)
      assert.equal(bad.hash, good.hash)
      assert.deepEqual(good.warnings.filter(w => /calibration cache/.test(w)), [])
      // One warning per process (the one-pass and the sequential caches share the home): the first case warns.
      const warned = bad.warnings.filter(w => /calibration cache .* cannot be written/.test(w))
      assert.equal(warned.length, method === 'frequency-pruning' ? 1 : 0, bad.warnings.join(''))
      if (warned.length) assert.match(warned[0]!, /set MOE_HARNESS_HOME to a writable folder/)
    })
  }
})
