// Expert pruning on a group-limited router (DeepSeek n_group > 1): the same number of lowest-scoring
// experts leaves every group, infeasible ratios fail at validate (METHOD_INFEASIBLE naming the feasible
// ones), and the result exports as a standard checkpoint.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { layoutOf } from '../../src/methods/registry.ts'
import { checkUniformRemoval, layerRemovalCount, removeLowestPerLayer } from '../../src/methods/helpers.ts'
import type { ExpertControls } from '../../src/methods/defineMethod.ts'
import { exportVariant } from '../../src/variants/export.ts'
import { planVariant, prepareVariant } from '../../src/variants/prepare.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
process.env.MOE_HARNESS_HOME = path.join(dir, 'home')
// 8 experts in 2 groups of 4, top-2 from 1 group: each group must keep 2 experts.
const grouped = writeTinyDeepseek(path.join(dir, 'v3-grouped'), { version: 'v3', seed: 91, layers: 2, qLoraRank: 16, experts: 8, topK: 2, nSharedExperts: 1, firstKDenseReplace: 1, nGroup: 2, topkGroup: 1 })
const ckpt = openCheckpoint(grouped.dir)
const layout = layoutOf(ckpt)

/** Records removals like the real controls do, per layer. */
function recorder(): ExpertControls & { removedBy: Map<number, number[]> } {
  const removedBy = new Map<number, number[]>()
  return {
    removedBy,
    remove(layer: number, e: number) { removedBy.set(layer, [...(removedBy.get(layer) ?? []), e].sort((a, b) => a - b)) },
    removed(layer: number) { return removedBy.get(layer) ?? [] },
  } as unknown as ExpertControls & { removedBy: Map<number, number[]> }
}

describe('grouped removal (DeepSeek-V3, n_group 2, topk_group 1)', () => {
  it('removes the lowest floor(ratio·E/G) per group, not the lowest per layer', () => {
    // Group 0 (experts 0..3) holds the four lowest scores: a per-layer ranking would empty it.
    const scores = layout.layers.map(() => [0.1, 0.4, 0.2, 0.3, 5, 9, 7, 6])
    const ex = recorder()
    const achieved = removeLowestPerLayer(layout, ex, 0.5, scores)
    for (const l of layout.layers) assert.deepEqual(ex.removed(l.index), [0, 2, 4, 7])
    assert.equal(achieved, 0.5)
    assert.equal(layerRemovalCount(0.5, layout.layers[0]!), 4)
    assert.equal(layerRemovalCount(0.3, layout.layers[0]!), 2, 'floor(0.3 × 8) = 2, 1 per group')
  })

  it('an infeasible ratio fails at validate, before calibration, naming the feasible ratios', async () => {
    assert.throws(() => checkUniformRemoval(0.75, layout), /removes 3 of 4 experts in each group, .* each group keeps at least 2; feasible ratios remove k = 1\.\.2 per group: ratio k\/4, i\.e\. 0\.25, 0\.5$/)
    assert.throws(() => checkUniformRemoval(0.375, layout), /removes floor\(0\.375 × 8\) = 3 experts, which do not split equally over 2 groups/)
    assert.throws(() => checkUniformRemoval(0.1, layout), /no expert in layer 1/)
    checkUniformRemoval(0.25, layout)
    checkUniformRemoval(0.5, layout)
    await assert.rejects(planVariant(ckpt, 'reap', { ratio: 0.75 }), (e: unknown) => e instanceof HarnessError && e.code === 'METHOD_INFEASIBLE' && /feasible ratios/.test(e.message))
  })

  it("reap at 0.5 (the trial's failing case) prepares, removes 2 per group, and exports as a standard checkpoint", async () => {
    const calibration = { source: 'builtin', sequences: 4, length: 24, seed: 3 }
    const v = await prepareVariant(ckpt, await planVariant(ckpt, 'reap', { ratio: 0.5 }), { calibration, device: 'cpu', threads: 1 })
    assert.equal(v.report.achievedRatio, 0.5)
    for (const l of layout.layers) {
      const disabled = v.edits.layers[l.index]!.disabled!
      assert.equal(disabled.length, 4)
      assert.equal(disabled.filter(e => e < 4).length, 2, `layer ${l.index} group 0: ${disabled}`)
      assert.equal(disabled.filter(e => e >= 4).length, 2, `layer ${l.index} group 1: ${disabled}`)
    }
    const out = path.join(dir, 'exported')
    assert.equal(exportVariant(ckpt, v.edits, out, { method: 'reap' }), 'hf')
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))
    assert.equal(cfg.n_routed_experts, 4)
    assert.equal(cfg.n_group, 2)
    assert.equal(openCheckpoint(out).spec.layers.find(l => l.kind === 'moe')!.numExperts, 4)
  })
})
