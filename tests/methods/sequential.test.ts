// Sequential calibration against a slow reference that literally re-runs full calibration on the
// partially edited model once per layer (as NAEE's progressive_pruning and Wanda's prune_wanda do):
// the engine must remove the same experts and write the same masks, exactly.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { getCalibrationStats } from '../../src/calibration/cache.ts'
import { collectStats } from '../../src/calibration/collect.ts'
import { sequentialStats } from '../../src/calibration/sequential.ts'
import { calibrationWindows } from '../../src/calibration/source.ts'
import type { StatNeed, StatsData } from '../../src/calibration/stats.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { moeLayers } from '../../src/model/modelSpec.ts'
import { startMethod } from '../../src/methods/applyMethod.ts'
import { loadMethod, needsOf, resolveParams, unprunedNeedsOf } from '../../src/methods/registry.ts'
import { planVariant, prepareVariant } from '../../src/variants/prepare.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { overrideValues } from '../../src/edits/overrideTensor.ts'

const dir = tmpDir()
process.env.MOE_HARNESS_HOME = path.join(dir, 'home')
const engine = { device: 'cpu' as const, threads: 1 }
const calibration = { source: 'builtin', sequences: 6, length: 32, seed: 5 }
const mixtral = openCheckpoint(writeTinyCheckpoint(path.join(dir, 'mixtral'), { family: 'mixtral', experts: 8, topK: 2, layers: 3, hidden: 32, ffn: 16, seed: 71 }).dir)
// A dense layer between two MoE layers and a shared expert: slices must run dense MLPs once.
const qwen = openCheckpoint(writeTinyCheckpoint(path.join(dir, 'qwen'), { family: 'qwen2_moe', experts: 6, topK: 2, layers: 3, hidden: 32, ffn: 12, sharedFfn: 16, mlpOnlyLayers: [1], seed: 72 }).dir)
// MLA attention, a dense first layer and a shared expert.
const deepseek = openCheckpoint(writeTinyDeepseek(path.join(dir, 'deepseek'), { version: 'v2', layers: 3, firstKDenseReplace: 1, experts: 8, topK: 2, nSharedExperts: 1, seed: 74 }).dir)

/** The slow reference: for each MoE layer, a full calibration pass of the model edited so far. */
async function slowSequential(ckpt: Checkpoint, method: string, given: Record<string, number | string | boolean>) {
  const m = await loadMethod(method)
  const params = resolveParams(m, given)
  const needs = needsOf(m, params) as StatNeed[]
  const unprunedNeeds = unprunedNeedsOf(m, params)
  const unpruned = unprunedNeeds.length ? (await getCalibrationStats(ckpt, calibration, unprunedNeeds, { ...engine, cacheDir: path.join(dir, 'slow') })).data : undefined
  const run = startMethod(m, params, ckpt, 'seed', unpruned)
  const { windows } = await calibrationWindows(calibration, ckpt.tokenizer())
  const perLayer: StatsData[] = []
  for (const layer of moeLayers(ckpt.spec)) {
    const full = await collectStats(ckpt, windows, needs, { key: '', needs, sequences: 0, length: 0, source: '' }, { ...engine, edits: structuredClone(run.edits) })
    perLayer.push(full)
    await run.layer(layer.index, full)
  }
  return { applied: run.finish(), perLayer }
}

async function engineSequential(ckpt: Checkpoint, method: string, given: Record<string, number | string | boolean>) {
  const m = await loadMethod(method)
  const params = resolveParams(m, given)
  const unprunedNeeds = unprunedNeedsOf(m, params)
  const unpruned = unprunedNeeds.length ? (await getCalibrationStats(ckpt, calibration, unprunedNeeds, engine)).data : undefined
  const run = startMethod(m, params, ckpt, 'seed', unpruned)
  const seq = await sequentialStats(ckpt, calibration, needsOf(m, params), run, engine)
  return { applied: run.finish(), seq }
}

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, what: string, rel = 1e-4): void {
  assert.equal(a.length, b.length, what)
  let scale = 0
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]))
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= rel * scale + 1e-6, `${what}[${i}]: ${a[i]} vs ${b[i]}`)
}

describe('sequential calibration', () => {
  for (const [name, ckpt] of [['mixtral', mixtral], ['qwen2_moe with a dense layer', qwen], ['deepseek-v2', deepseek]] as const) {
    it(`wanda on ${name}: the same masks and input norms as re-running calibration per layer`, async () => {
      const given = { ratio: 0.5, score: 'wanda' }
      const slow = await slowSequential(ckpt, 'magnitude-pruning', given)
      const fast = await engineSequential(ckpt, 'magnitude-pruning', given)
      assert.deepEqual(Object.keys(fast.applied.edits.overrides).sort(), Object.keys(slow.applied.edits.overrides).sort())
      for (const [tensor, stored] of Object.entries(slow.applied.edits.overrides)) {
        const data = overrideValues(stored), got = overrideValues(fast.applied.edits.overrides[tensor]!)
        assert.deepEqual(got.map(v => (v === 0 ? 1 : 0)), data.map(v => (v === 0 ? 1 : 0)), `zero mask of ${tensor}`)
        assert.deepEqual(got, data, tensor)
      }
      moeLayers(ckpt.spec).forEach((l, i) => {
        const a = fast.seq.data.inputNorms![l.index], b = slow.perLayer[i].inputNorms![l.index]
        assertClose(a.gateUp, b.gateUp, `layer ${l.index} gateUp`)
        assertClose(a.down, b.down, `layer ${l.index} down`)
      })
      assert.equal(fast.applied.report.achievedRatio, slow.applied.report.achievedRatio)
    })

    it(`naee (progressive) on ${name}: the same experts removed as re-running calibration per layer`, async () => {
      for (const ratio of [0.34, 0.5]) {
        const slow = await slowSequential(ckpt, 'naee', { ratio })
        const fast = await engineSequential(ckpt, 'naee', { ratio })
        assert.deepEqual(fast.applied.edits.layers, slow.applied.edits.layers, `ratio ${ratio}`)
        const losses = (r: typeof slow.applied) => (r.report.notes!.losses as number[][]).flat()
        assertClose(losses(fast.applied), losses(slow.applied), `ratio ${ratio} losses`)
      }
    })
  }

  it("layerTargets (NAEE progressive's Z) equals the routed output recomputed from the forced samples", async () => {
    const { data } = await getCalibrationStats(mixtral, calibration, ['layerSamples', 'layerTargets'], engine)
    for (const l of moeLayers(mixtral.spec)) {
      const s = data.layerSamples![l.index], z = data.layerTargets![l.index]
      assert.equal(z.tokens, s.tokens)
      const E = l.numExperts, d = mixtral.spec.hiddenSize
      const expected = new Float64Array(s.tokens * d)
      for (let t = 0; t < s.tokens; t++) {
        const logits = Array.from(s.routerLogits.subarray(t * E, (t + 1) * E))
        const ex = logits.map(v => Math.exp(v - Math.max(...logits)))
        const top = ex.map((_, e) => e).sort((a, b) => ex[b] - ex[a] || a - b).slice(0, l.topK)
        const sum = top.reduce((a, e) => a + ex[e], 0) // Mixtral renormalises over the top-k
        for (const e of top) for (let j = 0; j < d; j++) expected[t * d + j] += (ex[e] / sum) * s.expertOutputs[(e * s.tokens + t) * d + j]
      }
      assertClose(z.outputs, expected, `layer ${l.index}`, 1e-5)
    }
  })

  it('layer 0 sees the unpruned model; later layers see the earlier edits', async () => {
    const seq = await engineSequential(mixtral, 'magnitude-pruning', { ratio: 0.5, score: 'wanda' })
    const one = (await getCalibrationStats(mixtral, calibration, ['inputNorms'], engine)).data
    const [l0, l1] = moeLayers(mixtral.spec)
    assertClose(seq.seq.data.inputNorms![l0.index].gateUp, one.inputNorms![l0.index].gateUp, 'layer 0', 1e-6)
    const a = seq.seq.data.inputNorms![l1.index].gateUp, b = one.inputNorms![l1.index].gateUp
    assert.ok(a.some((v, i) => Math.abs(v - b[i]) > 1e-3 * Math.abs(b[i]) + 1e-6), 'layer 1 statistics must reflect the pruned layer 0')
  })

  it('caches per layer, keyed by the edits of the earlier layers', async () => {
    const home = path.join(dir, 'cache-home')
    const saved = process.env.MOE_HARNESS_HOME
    process.env.MOE_HARNESS_HOME = home
    try {
      const first = await engineSequential(mixtral, 'magnitude-pruning', { ratio: 0.5, score: 'wanda' })
      assert.equal(first.seq.layersFromCache, 0)
      const again = await engineSequential(mixtral, 'magnitude-pruning', { ratio: 0.5, score: 'wanda' })
      assert.equal(again.seq.layersFromCache, 3)
      assert.deepEqual(again.applied.edits, first.applied.edits)
      // Another ratio shares only layer 0 (no earlier edits); layers 1 and 2 follow different prefixes.
      const other = await engineSequential(mixtral, 'magnitude-pruning', { ratio: 0.25, score: 'wanda' })
      assert.equal(other.seq.layersFromCache, 1)
    } finally {
      process.env.MOE_HARNESS_HOME = saved
    }
  })

  it('prepareVariant records the procedure; calibration=one-pass keeps the one-pass statistics', async () => {
    const seq = await prepareVariant(mixtral, await planVariant(mixtral, 'naee', { ratio: 0.5 }), { calibration, ...engine })
    const one = await prepareVariant(mixtral, await planVariant(mixtral, 'naee', { ratio: 0.5, calibration: 'one-pass' }), { calibration, ...engine })
    assert.equal(seq.calibration?.procedure, 'sequential')
    assert.equal(one.calibration?.procedure, 'one-pass')
    assert.notEqual(seq.variantId, one.variantId)
    const slow = await slowSequential(mixtral, 'naee', { ratio: 0.5 })
    assert.deepEqual(seq.edits.layers, slow.applied.edits.layers)
    const magnitude = await planVariant(mixtral, 'magnitude-pruning', { ratio: 0.5 })
    assert.equal(magnitude.procedure, 'one-pass', 'no statistics, no calibration procedure')
  })
})
