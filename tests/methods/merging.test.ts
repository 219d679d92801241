// Expert merging against small hand-computed cases: M-SMoE's global allocation and grouping, the
// official frequency-weighted merge (empty groups included), and HC-SMoE's top_k := num_groups in
// the engine and in the exported config.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import type { MoeLayerSpec } from '../../src/model/modelSpec.ts'
import type { ModelNames } from '../../src/model/tensorNames.ts'
import type { MoeLayout } from '../../src/methods/defineMethod.ts'
import { globalGroupAllocation, mergeGroup, msmoeGroups, uniformGroups, usageFrequencies } from '../../src/methods/merging.ts'
import { exportVariant } from '../../src/variants/export.ts'
import { planVariant, prepareVariant } from '../../src/variants/prepare.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
process.env.MOE_HARNESS_HOME = path.join(dir, 'home')
const engine = { device: 'cpu' as const, threads: 1 }
const calibration = { source: 'builtin', sequences: 6, length: 32, seed: 5 }

function layer(index: number, E: number, F = 1): MoeLayerSpec {
  return { index, kind: 'moe', numExperts: E, topK: 2, expertFfn: F, normTopK: true } as unknown as MoeLayerSpec
}
function layoutOf(E: number, layers: number, F = 1, d = 2): MoeLayout {
  const names = { layers: Array.from({ length: layers }, (_, l) => ({ experts: Array.from({ length: E }, (_, e) => ({ gate: `l${l}.e${e}.gate`, up: `l${l}.e${e}.up`, down: `l${l}.e${e}.down` })) })) } as unknown as ModelNames
  return { family: 'mixtral', hiddenSize: d, layers: Array.from({ length: layers }, (_, l) => layer(l, E, F)), names }
}

describe('M-SMoE', () => {
  it('global allocation: frequencies normalised per layer, the most used set to 1.0, threshold at the total-th largest', () => {
    // L0 f = [.4 .3 .2 .1] → [1 .3 .2 .1]; L1 f = [.7 .1 .1 .1] → [1 .1 .1 .1].
    // ratio 0.5: total = 2 + 2 = 4; sorted [1 1 .3 .2 .1 .1 .1 .1][4] = .1 → L0 keeps 3 groups, L1 1.
    const layout = layoutOf(4, 2)
    assert.deepEqual(globalGroupAllocation(layout, 0.5, [[40, 30, 20, 10], [70, 10, 10, 10]]), [3, 1])
    assert.deepEqual(uniformGroups(layout, 0.5), [2, 2])
    // ratio 0.25: total = 3 + 3 = 6; threshold = .1 again: the tie at .1 gives 4 groups, not 6 (strict >).
    assert.deepEqual(globalGroupAllocation(layout, 0.25, [[40, 30, 20, 10], [70, 10, 10, 10]]), [3, 1])
    assert.deepEqual(Array.from(usageFrequencies([1, 3, 0, 0])), [0.25, 0.75, 0, 0])
  })

  it('grouping: dominants by usage, the rest in usage order join the most similar dominant; ties go to the more used one', () => {
    // Router-logit columns over 3 tokens; Gram = LᵀL.
    const cols = [[1, 0, 0], [0, 1, 0], [0.1, 1, 0], [1, 0.2, 0]]
    const gram = (c: number[][]) => c.flatMap(a => c.map(b => a.reduce((s, x, t) => s + x * b[t], 0)))
    // usage order 1, 0, 3, 2: dominants 1 and 0; expert 2 resembles 1, expert 3 resembles 0.
    assert.deepEqual(msmoeGroups([5, 9, 1, 3], gram(cols), 4, 2), [[1, 2], [0, 3]])
    // Expert 2 equally similar to both dominants joins expert 1, the more used (torch.argmax order).
    const tie = [[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0.2, 0]]
    assert.deepEqual(msmoeGroups([5, 9, 1, 3], gram(tie), 4, 2), [[1, 2], [0, 3]])
  })
})

describe('frequency-weighted merge', () => {
  function store(E: number) {
    const tensors = new Map<string, Float32Array>()
    for (let e = 0; e < E; e++) for (const [k, m] of [['gate', 1], ['up', 10], ['down', 100]] as const) tensors.set(`l0.e${e}.${k}`, Float32Array.of(m * (e + 1), -m * (e + 1)))
    const bound: Record<number, number> = {}
    const warnings: string[] = []
    const ctx = {
      layout: layoutOf(E, 1),
      weights: { get: (n: string) => tensors.get(n)!.slice(), set: (n: string, v: Float32Array) => void tensors.set(n, Float32Array.from(v)), shape: () => [1, 2] },
      experts: { bind: (_l: number, slot: number, src: number) => { bound[slot] = src }, remove() {}, setNovice() {}, removed: () => [] },
      log: { warn: (m: string) => void warnings.push(m), info() {} },
    }
    return { tensors, bound, warnings, ctx }
  }

  it('W̃ = Σ f·W / (Σ f + 1e-7) into the first slot, members bound to it', () => {
    const { tensors, bound, warnings, ctx } = store(4)
    const freq = [0.2, 0.6, 0, 0.2]
    assert.equal(mergeGroup(ctx, layer(0, 4), [1, 0, 2], freq), 'merged')
    // gate: (0.6·2 + 0.2·1 + 0·3) / (0.8 + 1e-7)
    const c = 1 / (0.8 + 1e-7)
    assert.ok(Math.abs(tensors.get('l0.e1.gate')![0] - (0.6 * 2 + 0.2 * 1) * c) < 1e-6)
    assert.ok(Math.abs(tensors.get('l0.e1.down')![1] - -(0.6 * 200 + 0.2 * 100) * c) < 1e-4)
    assert.deepEqual(bound, { 0: 1, 2: 1 })
    assert.deepEqual(warnings, [])
    // A used singleton is left as it is.
    assert.equal(mergeGroup(ctx, layer(0, 4), [3], freq), 'unchanged')
    assert.deepEqual(Array.from(tensors.get('l0.e3.gate')!), [4, -4])
  })

  it('a group with no calibration tokens merges to zeros, as the official formula gives, and is named in a warning', () => {
    const { tensors, bound, warnings, ctx } = store(4)
    const freq = [0.5, 0.5, 0, 0]
    assert.equal(mergeGroup(ctx, layer(0, 4), [2, 3], freq), 'empty')
    for (const k of ['gate', 'up', 'down']) assert.deepEqual(Array.from(tensors.get(`l0.e2.${k}`)!), [0, 0])
    assert.deepEqual(bound, { 3: 2 })
    assert.equal(warnings.length, 1)
    assert.match(warnings[0], /layer 0: merge group \[2, 3\] received no calibration tokens/)
    assert.equal(mergeGroup(ctx, layer(0, 4), [3], freq), 'empty', 'an unused singleton too')
  })
})

describe('HC-SMoE with fewer groups than top-k', () => {
  const model = writeTinyCheckpoint(path.join(dir, 'top3'), { family: 'mixtral', experts: 4, topK: 3, layers: 2, hidden: 32, ffn: 16, seed: 91 })
  const ckpt = openCheckpoint(model.dir)
  const SEQS = [[0, 44, 12, 30, 7, 7, 128, 255, 19, 3, 5], [9, 8, 7, 6, 5, 4, 3, 2]]
  async function scoreWith(c: typeof ckpt, edits: Parameters<typeof createLocalScorer>[1]) {
    const s = await createLocalScorer(c, edits, engine)
    const r = await s.score(SEQS.map(q => ({ prefix: q, branches: [], scorePrefixFrom: 1 })))
    await s.release()
    return r.map(x => x.prefix)
  }

  it('sets top_k := groups in the engine and in the exported config, and the export scores the same', async () => {
    const v = await prepareVariant(ckpt, await planVariant(ckpt, 'hc-smoe', { ratio: 0.5 }), { calibration, ...engine })
    for (const l of [0, 1]) assert.equal(v.edits.layers[l].topK, 2, `layer ${l}: 2 groups < top-3`)
    const withTopK = await scoreWith(ckpt, v.edits)
    const withoutTopK = await scoreWith(ckpt, { ...v.edits, layers: Object.fromEntries(Object.entries(v.edits.layers).map(([l, h]) => [l, { ...h, topK: undefined }])) })
    assert.notDeepEqual(withTopK, withoutTopK, 'the engine routes to 2 slots, not 3')
    const out = path.join(dir, 'hc-export')
    assert.equal(exportVariant(ckpt, v.edits, out, { method: 'hc-smoe' }), 'hf')
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))
    assert.equal(cfg.num_experts_per_tok, 2)
    assert.equal(cfg.num_local_experts, 4, 'merging keeps every slot')
    const fromDisk = await scoreWith(openCheckpoint(out), { layers: {}, overrides: {} })
    withTopK.forEach((seq, i) => seq.forEach((lp, j) => assert.ok(Math.abs(lp - fromDisk[i][j]) < 1e-5, `${lp} vs ${fromDisk[i][j]}`)))
    // At ratio 0.25 three groups remain: top-3 stays.
    const three = await prepareVariant(ckpt, await planVariant(ckpt, 'hc-smoe', { ratio: 0.25 }), { calibration, ...engine })
    assert.equal(three.edits.layers[0].topK, undefined)
  })

  it('expert-merging still works as a deprecated alias with the same result', async () => {
    const alias = await prepareVariant(ckpt, await planVariant(ckpt, 'expert-merging', { ratio: 0.5, algorithm: 'hc-smoe' }), { calibration, ...engine })
    const direct = await prepareVariant(ckpt, await planVariant(ckpt, 'hc-smoe', { ratio: 0.5 }), { calibration, ...engine })
    assert.deepEqual(alias.edits, direct.edits)
    assert.ok(alias.warnings.some(w => /expert-merging is deprecated; use the method hc-smoe/.test(w)), alias.warnings.join('; '))
    const msmoe = await prepareVariant(ckpt, await planVariant(ckpt, 'expert-merging', { ratio: 0.5, algorithm: 'm-smoe' }), { calibration, ...engine })
    const msmoeDirect = await prepareVariant(ckpt, await planVariant(ckpt, 'm-smoe', { ratio: 0.5 }), { calibration, ...engine })
    assert.deepEqual(msmoe.edits, msmoeDirect.edits)
  })
})
