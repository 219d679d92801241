// The contract every method file gets for free: ratio 0 is the identity, the achieved ratio tracks
// the request, results are deterministic, infeasible requests fail before calibration, experts with
// no routed tokens never produce NaN, and the transformed model reloads and scores identically.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { isEmptyEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { loadAllMethods, resolveParams } from '../../src/methods/registry.ts'
import { applyMethod } from '../../src/methods/applyMethod.ts'
import { getCalibrationStats } from '../../src/calibration/cache.ts'
import { ALL_NEEDS } from '../../src/calibration/stats.ts'
import { exportVariant } from '../../src/variants/export.ts'
import { planVariant, prepareVariant } from '../../src/variants/prepare.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { overrideValues } from '../../src/edits/overrideTensor.ts'

const dir = tmpDir()
process.env.MOE_HARNESS_HOME = path.join(dir, 'home')
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 8, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 51 })
const ckpt = openCheckpoint(model.dir)
const calibration = { source: 'builtin', sequences: 6, length: 32, seed: 3 }
const engine = { device: 'cpu' as const, threads: 1 }
const SEQS = [[0, 44, 12, 300, 7, 7, 128, 255, 19, 3, 5], [9, 8, 7, 6, 5, 4, 3, 2]]
const methods = await loadAllMethods()

async function scoreWith(c: typeof ckpt, edits: Parameters<typeof createLocalScorer>[1]) {
  const s = await createLocalScorer(c, edits, engine)
  const r = await s.score(SEQS.map(q => ({ prefix: q, branches: [], scorePrefixFrom: 1 })))
  await s.release()
  return r.map(x => x.prefix)
}
const base = await scoreWith(ckpt, { layers: {}, overrides: {} })

for (const method of methods) {
  describe(`method contract: ${method.name}`, () => {
    it('ratio 0 is the identity', async () => {
      const plan = await planVariant(ckpt, method.name, { ratio: 0 })
      const v = await prepareVariant(ckpt, plan, { calibration, ...engine })
      assert.equal(v.report.achievedRatio, 0)
      assert.ok(isEmptyEdits(v.edits), `edits: ${JSON.stringify(v.edits.layers)}`)
      assert.deepEqual(await scoreWith(ckpt, v.edits), base)
    })

    it('the achieved ratio tracks the requested one and grows with it', async () => {
      let previous = 0
      for (const ratio of [0.25, 0.5]) {
        const v = await prepareVariant(ckpt, await planVariant(ckpt, method.name, { ratio }), { calibration, ...engine })
        assert.ok(Math.abs(v.report.achievedRatio - ratio) <= 1 / 8 + 1e-9, `ratio ${ratio}: achieved ${v.report.achievedRatio}`)
        assert.ok(v.report.achievedRatio > previous)
        previous = v.report.achievedRatio
        assert.ok(!isEmptyEdits(v.edits))
      }
    })

    it('is deterministic: same params and data give the same variant id and edits', async () => {
      const a = await prepareVariant(ckpt, await planVariant(ckpt, method.name, { ratio: 0.5 }), { calibration, ...engine })
      const b = await prepareVariant(ckpt, await planVariant(ckpt, method.name, { ratio: 0.5 }), { calibration, ...engine })
      assert.equal(a.variantId, b.variantId)
      assert.deepEqual(a.edits, b.edits)
      const other = await prepareVariant(ckpt, await planVariant(ckpt, method.name, { ratio: 0.25 }), { calibration, ...engine })
      assert.notEqual(other.variantId, a.variantId)
    })

    it('an out-of-range or infeasible ratio fails before any calibration', async () => {
      await assert.rejects(planVariant(ckpt, method.name, { ratio: 1.2 }), (e: unknown) => e instanceof HarnessError && e.code === 'INVALID_ARGUMENT' && /ratio/.test(e.message))
      if (method.family === 'expert-pruning') {
        const home = path.join(dir, `fresh-${method.name}`)
        const saved = process.env.MOE_HARNESS_HOME
        process.env.MOE_HARNESS_HOME = home
        try {
          await assert.rejects(planVariant(ckpt, method.name, { ratio: 0.9 }), (e: unknown) => e instanceof HarnessError && e.code === 'METHOD_INFEASIBLE' && e.method === method.name && e.phase === 'validate' && /top-2/.test(e.message))
          assert.equal(fs.existsSync(path.join(home, 'calibration')), false, 'no calibration was run')
        } finally {
          process.env.MOE_HARNESS_HOME = saved
        }
      }
    })

    it('the transformed model reloads through the engine and scores identically', async () => {
      const v = await prepareVariant(ckpt, await planVariant(ckpt, method.name, { ratio: 0.25 }), { calibration, ...engine })
      const out = path.join(dir, `export-${method.name}`)
      const format = exportVariant(ckpt, v.edits, out, { method: method.name })
      const reloaded = openCheckpoint(out)
      const inHarness = await scoreWith(ckpt, v.edits)
      const fromDisk = await scoreWith(reloaded, { layers: {}, overrides: {} })
      inHarness.forEach((seq, i) => seq.forEach((lp, j) => assert.ok(Math.abs(lp - fromDisk[i][j]) < 1e-5, `${format} export: ${lp} vs ${fromDisk[i][j]}`)))
      if (format === 'hf') {
        const removed = v.accounting.layers[0].removed.length
        const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))
        assert.equal(cfg.num_local_experts, 8 - removed)
        assert.equal(reloaded.tensors.get('model.layers.0.block_sparse_moe.gate.weight')!.shape[0], 8 - removed)
      }
    })
  })
}

describe('experts with no routed calibration tokens', () => {
  it('never produce NaN scores or weights in any method', async () => {
    // Statistics as if expert 5 of layer 1 had never been chosen on the calibration set.
    const { data } = await getCalibrationStats(ckpt, calibration, ALL_NEEDS, engine)
    const starved = structuredClone(data)
    const E = 8, d = 32, F = 16, e = 5
    const r = starved.routing![1]
    r.count[e] = 0; r.gateSum[e] = 0; r.gateSumRenorm[e] = 0; r.gateSumRaw[e] = 0
    const o = starved.expertOutputs![1]
    for (const arr of [o.sum, o.sumSq]) arr.fill(0, e * d, (e + 1) * d)
    o.normSum[e] = 0; o.gateNormSum[e] = 0; o.gateNormSumModel[e] = 0; o.maxAbs[e] = 0
    const n = starved.inputNorms![1]
    for (const arr of [n.gateUp, n.gateUpWeighted]) arr.fill(0, e * d, (e + 1) * d)
    for (const arr of [n.down, n.downWeighted]) arr.fill(0, e * F, (e + 1) * F)
    assert.equal(r.count.length, E)
    for (const method of methods) {
      const params = resolveParams(method, { ratio: 0.25 })
      const v = await applyMethod(method, params, ckpt, starved, 'starved')
      assert.ok(Number.isFinite(v.report.achievedRatio), method.name)
      for (const w of Object.values(v.edits.overrides)) assert.ok(overrideValues(w).every(Number.isFinite), method.name)
      for (const h of Object.values(v.edits.layers)) for (const vec of Object.values(h.novices ?? {})) assert.ok(vec.every(Number.isFinite), method.name)
      if (['frequency-pruning', 'reap', 'ean', 'novice-replacement'].includes(method.name)) {
        const touched = [...(v.edits.layers[1]?.disabled ?? []), ...Object.keys(v.edits.layers[1]?.novices ?? {}).map(Number)]
        assert.ok(touched.includes(e), `${method.name} removes the starved expert first (got ${touched})`)
      }
    }
  })
})
