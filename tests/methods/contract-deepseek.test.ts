// The method contract on DeepSeek checkpoints (tests/methods/contract.test.ts runs it on Mixtral):
// ratio 0 is the identity, the achieved ratio tracks the request, results are deterministic, shared
// experts and dense layers are never edited, and the transformed model reloads and scores identically
// (a standard export slices the router rows and V3's e_score_correction_bias, and updates
// n_routed_experts). V2: softmax greedy routing, two shared experts, one dense layer. V3: sigmoid
// scores with the correction bias, one group, one shared expert.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { isEmptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { loadAllMethods } from '../../src/methods/registry.ts'
import { exportVariant } from '../../src/variants/export.ts'
import { planVariant, prepareVariant } from '../../src/variants/prepare.ts'
import { lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyDeepseek, type TinyDeepseekOptions } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
process.env.MOE_HARNESS_HOME = path.join(dir, 'home')
const calibration = { source: 'builtin', sequences: 4, length: 24, seed: 3 }
const engine = { device: 'cpu' as const, threads: 1 }
const SEQS = [[0, 44, 12, 300, 7, 7, 128, 255, 19, 3, 5], [9, 8, 7, 6, 5, 4, 3, 2]]
const methods = await loadAllMethods()

const models: { name: string; options: TinyDeepseekOptions }[] = [
  { name: 'DeepSeek-V2 greedy', options: { version: 'v2', seed: 61, layers: 2, qLoraRank: null, experts: 8, topK: 2, nSharedExperts: 2, firstKDenseReplace: 1, topkMethod: 'greedy' } },
  { name: 'DeepSeek-V3 noaux_tc', options: { version: 'v3', seed: 62, layers: 2, qLoraRank: 16, experts: 8, topK: 2, nSharedExperts: 1, firstKDenseReplace: 1, nGroup: 1, topkGroup: 1 } },
]

async function scoreWith(c: Checkpoint, edits: VariantEdits) {
  const s = await createLocalScorer(c, edits, engine)
  const r = await s.score(SEQS.map(q => ({ prefix: q, branches: [], scorePrefixFrom: 1 })))
  await s.release()
  return r.map(x => x.prefix)
}

for (const m of models) {
  const model = writeTinyDeepseek(path.join(dir, m.name.replace(/\W+/g, '_')), m.options)
  const ckpt = openCheckpoint(model.dir)
  const base = await scoreWith(ckpt, { layers: {}, overrides: {} })
  const sharedTensors = [...ckpt.tensors.keys()].filter(n => n.includes('shared_experts') || /layers\.0\.mlp\./.test(n))

  for (const method of methods) {
    describe(`method contract on ${m.name}: ${method.name}`, () => {
      it('ratio 0 is the identity', async () => {
        const v = await prepareVariant(ckpt, await planVariant(ckpt, method.name, { ratio: 0 }), { calibration, ...engine })
        assert.equal(v.report.achievedRatio, 0)
        assert.ok(isEmptyEdits(v.edits), `edits: ${JSON.stringify(v.edits.layers)}`)
        assert.deepEqual(await scoreWith(ckpt, v.edits), base)
      })

      it('tracks the ratio, is deterministic, never edits shared experts or dense layers, and exports losslessly', async () => {
        const a = await prepareVariant(ckpt, await planVariant(ckpt, method.name, { ratio: 0.25 }), { calibration, ...engine })
        const b = await prepareVariant(ckpt, await planVariant(ckpt, method.name, { ratio: 0.25 }), { calibration, ...engine })
        assert.ok(Math.abs(a.report.achievedRatio - 0.25) <= 1 / 8 + 1e-9, `achieved ${a.report.achievedRatio}`)
        assert.ok(!isEmptyEdits(a.edits))
        assert.equal(a.variantId, b.variantId)
        assert.deepEqual(a.edits, b.edits)
        for (const name of Object.keys(a.edits.overrides)) assert.ok(!sharedTensors.includes(name), `${method.name} edited ${name}`)
        assert.deepEqual(Object.keys(a.edits.layers).map(Number).filter(l => ckpt.spec.layers[l].kind !== 'moe'), [])

        const out = path.join(dir, `export-${m.options.version}-${method.name}`)
        const format = exportVariant(ckpt, a.edits, out, { method: method.name })
        const reloaded = openCheckpoint(out)
        const inHarness = await scoreWith(ckpt, a.edits)
        const fromDisk = await scoreWith(reloaded, { layers: {}, overrides: {} })
        inHarness.forEach((seq, i) => seq.forEach((lp, j) => assert.ok(Math.abs(lp - fromDisk[i][j]) < 1e-5, `${format} export: ${lp} vs ${fromDisk[i][j]}`)))
        if (format === 'hf') {
          const removed = a.edits.layers[1]?.disabled?.length ?? 0
          const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))
          assert.equal(cfg.n_routed_experts, 8 - removed)
          assert.equal(reloaded.tensors.get('model.layers.1.mlp.gate.weight')!.shape[0], 8 - removed)
          if (m.options.version === 'v3') assert.deepEqual(reloaded.tensors.get('model.layers.1.mlp.gate.e_score_correction_bias')!.shape, [8 - removed])
        }
      })
    })
  }
}

describe('expert removal on a group-limited router fails before calibration when groups cannot route', () => {
  const model = writeTinyDeepseek(path.join(dir, 'grouped4'), { version: 'v3', seed: 65, layers: 2, experts: 8, topK: 2, nGroup: 4, topkGroup: 2, firstKDenseReplace: 1 })
  const ckpt = openCheckpoint(model.dir)
  for (const method of methods.filter(m => m.family === 'expert-pruning')) {
    it(method.name, async () => {
      const home = path.join(dir, `fresh-grouped-${method.name}`)
      const saved = process.env.MOE_HARNESS_HOME
      process.env.MOE_HARNESS_HOME = home
      try {
        // 6 of 8 removed would leave top-2 from 2 of 4 groups with fewer than 2 experts somewhere.
        await assert.rejects(planVariant(ckpt, method.name, { ratio: 0.75 }), (e: unknown) => e instanceof HarnessError && e.code === 'METHOD_INFEASIBLE' && /expert groups/.test(e.message))
        assert.equal(fs.existsSync(path.join(home, 'calibration')), false, 'no calibration was run')
      } finally {
        process.env.MOE_HARNESS_HOME = saved
      }
    })
  }
})

describe('transform on a group-limited router (DeepSeek-V3, n_group 2)', () => {
  const model = writeTinyDeepseek(path.join(dir, 'grouped'), { version: 'v3', seed: 63, layers: 2, experts: 8, topK: 2, nGroup: 2, topkGroup: 1, firstKDenseReplace: 1 })
  const ckpt = openCheckpoint(model.dir)
  for (const [disabled, expected] of [[[1, 6], 'hf'], [[0, 1], 'harness']] as const) {
    it(`removing experts ${disabled} writes a ${expected} checkpoint that scores identically`, async () => {
      const edits: VariantEdits = { overrides: {}, layers: { 1: { disabled: [...disabled] } } }
      const out = path.join(dir, `grouped-${disabled.join('-')}`)
      assert.equal(exportVariant(ckpt, edits, out, { test: true }), expected)
      const reloaded = openCheckpoint(out)
      const want = await scoreWith(ckpt, edits)
      const got = await scoreWith(reloaded, { layers: {}, overrides: {} })
      want.forEach((seq, i) => seq.forEach((lp, j) => assert.ok(Math.abs(lp - got[i][j]) < 1e-5, `${lp} vs ${got[i][j]}`)))
      if (expected === 'hf') {
        const bias = model.tensors.get('model.layers.1.mlp.gate.e_score_correction_bias')!.data
        const sliced = reloaded.read('model.layers.1.mlp.gate.e_score_correction_bias')
        assert.deepEqual([...sliced], [0, 2, 3, 4, 5, 7].map(e => bias[e]))
        assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).n_routed_experts, 6)
      }
    })
  }
})

describe('moe-harness eval --method on a DeepSeek checkpoint', () => {
  const model = writeTinyDeepseek(path.join(dir, 'cli'), { version: 'v3', seed: 64, layers: 2, qLoraRank: 16, experts: 8, topK: 2, nSharedExperts: 1, firstKDenseReplace: 1, nGroup: 2, topkGroup: 2 })
  const env = { MOE_HARNESS_HOME: path.join(dir, 'cli-home') }
  for (const method of methods) {
    it(`${method.name} --ratio 0.25 scores a task`, () => {
      const r = runCli(['eval', '--model', model.dir, '--tasks', 'brown-cloze', '--limit', '4', '--method', method.name, '--ratio', '0.25', '--calibration-sequences', '4', '--calibration-length', '32', '--threads', '1', '--json'], { env })
      assert.equal(r.status, 0, r.stderr)
      const acc = lastJson(r.stdout).results['brown-cloze'].acc
      assert.ok(acc >= 0 && acc <= 1, `acc ${acc}`)
    })
  }

  it('a mask that empties an expert group fails before scoring, naming the group', () => {
    const r = runCli(['score', '--model', model.dir, '--ids', '1,2,3,4', '--mask-experts', '1:0,1,2,3', '--json'], { env })
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /HOOK_INVALID.*layer 1: group 0 \(experts 0\.\.3\) would lose all its experts/)
  })
})
