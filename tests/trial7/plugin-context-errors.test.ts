// Fresh-user trial 7: a method plugin's mistakes with the method context and the shared helpers give
// a clear error, never a wrong variant. Found: experts.remove/bind/setNovice on a layer that is not a
// MoE layer (a position in layout.layers used as the layer index, on a model with a dense first
// layer) failed with "TypeError: Cannot read properties of undefined (reading 'numExperts')";
// removeLowestPerLayer given fewer scores than experts (or a misspelt statistic field, undefined)
// removed arbitrary experts and reported the requested ratio as achieved; achievedRatio NaN was
// reported as "got {"achievedRatio":null}"; a helper's own METHOD_FAILED read "METHOD_FAILED: METHOD_FAILED: ...";
// `throw { code: 42 }` read "[object Object]".
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { applyMethod } from '../../src/methods/applyMethod.ts'
import { defineMethod, dropLowest, p, removeLowestPerLayer } from '../../src/index.ts'
import type { MethodContext, MethodDefinition, MethodReport } from '../../src/methods/defineMethod.ts'
import { layoutOf, validateMethod, type ParamValues } from '../../src/methods/registry.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
// Decoder layer 0 is a dense MLP; the MoE layers are 1 and 2 (as DeepSeek's first_k_dense_replace gives).
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'qwen2_moe', layers: 3, mlpOnlyLayers: [0], experts: 4, topK: 2, hidden: 16, ffn: 8, sharedFfn: 8, seed: 7 })
const ckpt = openCheckpoint(model.dir)

function method(apply: (ctx: MethodContext<ParamValues>) => MethodReport): MethodDefinition {
  return defineMethod({ name: 'trial-plugin', description: 'A plugin with a mistake.', family: 'expert-pruning', params: { ratio: p.ratio() }, apply }) as unknown as MethodDefinition
}

async function failure(apply: (ctx: MethodContext<ParamValues>) => MethodReport): Promise<HarnessError> {
  try {
    await applyMethod(method(apply), { ratio: 0.25 }, ckpt, undefined, 'trial7')
  } catch (e) {
    assert.ok(e instanceof HarnessError, `a HarnessError, got ${String(e)}`)
    return e
  }
  assert.fail('the method was applied')
}

describe('method context mistakes', () => {
  it('the layout has the MoE layers 1 and 2 (the case is meaningful)', () => {
    assert.deepEqual(ckpt.spec.layers.map(l => l.kind), ['dense', 'moe', 'moe'])
  })

  for (const [what, call] of [
    ['experts.remove', (c: MethodContext<ParamValues>) => c.experts.remove(0, 1)],
    ['experts.bind', (c: MethodContext<ParamValues>) => c.experts.bind(0, 1, 2)],
    ['experts.setNovice', (c: MethodContext<ParamValues>) => c.experts.setNovice(0, 1, new Float32Array(16))],
  ] as const) {
    it(`${what} on the dense layer 0 (a position, not a MoE layer index) is HOOK_INVALID naming the MoE layers`, async () => {
      const e = await failure(c => { call(c); return { achievedRatio: 0 } })
      assert.equal(e.code, 'METHOD_FAILED')
      assert.match(e.message, /^HOOK_INVALID: layer 0 is not a MoE layer \(MoE layers: 1, 2\); pass a layer's index \(layout\.layers\[i\]\.index\), not its position/)
      assert.doesNotMatch(e.message, /TypeError/)
    })
  }

  it('the same calls with the layer index edit the variant', async () => {
    const r = await applyMethod(method(c => { c.experts.remove(c.layout.layers[0].index, 1); return { achievedRatio: 1 / 8 } }), { ratio: 0.25 }, ckpt, undefined, 'trial7')
    assert.deepEqual(r.edits.layers[1].disabled, [1])
  })

  it('a thrown plain object is shown as written, not "[object Object]"', async () => {
    const e = await failure(() => { throw { code: 42, why: 'no scores' } })
    assert.match(e.message, /^\{ code: 42, why: 'no scores' \}/)
  })

  it('reading a parameter the method does not declare names it and the closest one (it was undefined: every expert removed)', async () => {
    const e = await failure(c => ({ achievedRatio: removeLowestPerLayer(c.layout, c.experts, (c.params as Record<string, number>).ratoi, c.layout.layers.map(() => [4, 1, 3, 2])) }))
    assert.match(e.message, /^INVALID_ARGUMENT: params\.ratoi: method 'trial-plugin' has no parameter 'ratoi' \(did you mean params\.ratio\?\); its parameters: ratio/)
  })

  it('so does validate (a mistake, METHOD_FAILED: a sweep skipped it as an infeasible setting)', () => {
    const m = defineMethod({ name: 'trial-plugin', description: 'x.', family: 'expert-pruning', params: { ratio: p.ratio() },
      validate: params => { if ((params as Record<string, number>).ratoi > 0.5) throw new Error('too high') }, apply: () => ({ achievedRatio: 0 }) }) as unknown as MethodDefinition
    assert.throws(() => validateMethod(m, { ratio: 0.25 }, layoutOf(ckpt)), (e: HarnessError) => e.code === 'METHOD_FAILED' && e.phase === 'validate' && /^INVALID_ARGUMENT: params\.ratoi: method 'trial-plugin' has no parameter 'ratoi'/.test(e.message))
  })

  it('the parameters still spread, serialise and answer `in` as a plain object', async () => {
    const r = await applyMethod(method(c => ({ achievedRatio: 0, notes: { spread: { ...c.params }, json: JSON.parse(JSON.stringify(c.params)), has: 'ratoi' in c.params } })), { ratio: 0.25 }, ckpt, undefined, 'trial7')
    assert.deepEqual(r.report.notes, { spread: { ratio: 0.25 }, json: { ratio: 0.25 }, has: false })
  })

  it('an achievedRatio of NaN is shown as NaN, not null', async () => {
    const e = await failure(() => ({ achievedRatio: NaN }))
    assert.match(e.message, /must return \{ achievedRatio: number, \.\.\. \}, got \{ achievedRatio: NaN \}/)
  })
})

describe('removeLowestPerLayer and dropLowest with wrong scores', () => {
  const count = (c: MethodContext<ParamValues>) => c.layout.layers.map(() => [4, 1, 3, 2])
  it('one score per expert in every MoE layer removes the lowest (the cases below differ only in their scores)', async () => {
    const r = await applyMethod(method(c => ({ achievedRatio: removeLowestPerLayer(c.layout, c.experts, 0.25, count(c)) })), { ratio: 0.25 }, ckpt, undefined, 'trial7')
    assert.deepEqual([r.edits.layers[1].disabled, r.edits.layers[2].disabled], [[1], [1]])
    assert.equal(r.report.achievedRatio, 0.25)
  })

  const cases: [string, (c: MethodContext<ParamValues>) => unknown, RegExp][] = [
    ['fewer scores than experts', c => c.layout.layers.map(() => [4, 1, 3]), /scores\[0\] \(layer 1\) must hold one score per expert \(4\), got 3 values; e\.g\. layout\.layers\.map/],
    ['a misspelt statistic field (undefined)', c => c.layout.layers.map(() => undefined), /scores\[0\] \(layer 1\) must hold one score per expert \(4\), got undefined/],
    ['one list per decoder layer (indexed by layer.index)', c => { const s: number[][] = []; for (const l of c.layout.layers) s[l.index] = [4, 1, 3, 2]; return s }, /one list per MoE layer, in layout\.layers order \(2 lists\), got 3 entries/],
    ['a NaN score', c => c.layout.layers.map(() => [4, NaN, 3, 2]), /scores\[0\]\[1\] \(layer 1, expert 1\) is NaN/],
    ['a ratio in percent', c => c.layout.layers.map(() => [4, 1, 3, 2]), /ratio must be a share in \[0, 1\) \(params\.ratio\), got 25/],
  ]
  for (const [what, scores, message] of cases) {
    it(`${what}: INVALID_ARGUMENT naming the layer, nothing removed silently`, async () => {
      const e = await failure(c => ({ achievedRatio: removeLowestPerLayer(c.layout, c.experts, what === 'a ratio in percent' ? 25 : 0.25, scores(c) as number[][]) }))
      assert.equal(e.code, 'METHOD_FAILED')
      assert.match(e.message, /^INVALID_ARGUMENT: removeLowestPerLayer: /)
      assert.match(e.message, message)
    })
  }

  it('dropLowest refuses a missing or NaN score (its sort would keep arbitrary experts)', () => {
    assert.deepEqual(dropLowest([4, 1, 3, 2], 3), [1])
    assert.throws(() => dropLowest([4, 1, undefined as unknown as number, 2], 3), (e: HarnessError) => e.code === 'INVALID_ARGUMENT' && /score 2 is not a number \(undefined\)/.test(e.message))
    assert.throws(() => dropLowest([4, NaN, 3, 2], 3), (e: HarnessError) => e.code === 'INVALID_ARGUMENT' && /score 1 is NaN/.test(e.message))
  })
})
