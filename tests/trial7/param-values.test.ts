// Fresh-user trial 7: method parameter values on the command line. Found: `--param k=` ran with k = 0
// (Number('') is 0); `--param k=abc` said "must be a number, got null"; `--param k=1 --param k=2` ran
// with k = 2 silently; `--ratio 0.25 --param ratio=0.3` ran at 0.25 without a word.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { planFromFlags } from '../../src/cli/methodOptions.ts'
import { HarnessError } from '../../src/errors.ts'
import { defineMethod, p } from '../../src/index.ts'
import type { MethodDefinition } from '../../src/methods/defineMethod.ts'
import { parseParamOverrides, resolveParams } from '../../src/methods/registry.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { parseConfig } from '../../src/config/defineConfig.ts'
import { expandVariants } from '../../src/sweep/plan.ts'
import { ROOT } from '../helpers/cli.ts'

const method = defineMethod({
  name: 'trial-params', description: 'Parameters of every kind.', family: 'expert-pruning',
  params: { ratio: p.ratio(), k: p.integer({ default: 2, min: 0, max: 10, description: 'k' }), alpha: p.number({ default: 0.5, min: 0, max: 1, description: 'alpha' }) },
  apply: () => ({ achievedRatio: 0 }),
}) as unknown as MethodDefinition

const refused = (pairs: string[], message: RegExp) => assert.throws(() => parseParamOverrides(method, pairs), (e: HarnessError) => e.code === 'INVALID_ARGUMENT' && message.test(e.message))

describe('--param values', () => {
  it('numbers in any JavaScript spelling are read as numbers (the cases below fail for their own reason)', () => {
    assert.deepEqual(resolveParams(method, parseParamOverrides(method, ['k=3', 'alpha=2.5e-1', 'ratio= 0.5 '])), { alpha: 0.25, k: 3, ratio: 0.5 })
  })
  it('an empty value is refused, not read as 0', () => refused(['k='], /^trial-params\.k must be an integer, got '' \(--param k=<integer>\)\.$/))
  it('a word is refused naming it, not "got null"', () => refused(['alpha=high'], /^trial-params\.alpha must be a number, got 'high' \(--param alpha=<number>\)\.$/))
  it('a parameter given twice is refused, naming both values', () => refused(['k=1', 'k=2'], /^--param k is given twice \(k=1 and k=2\); pass it once/))

  it('--ratio and a different --param ratio are refused; the same value passes', async () => {
    const ckpt = openCheckpoint(path.join(ROOT, 'models/tiny-moe'))
    const flags = (ratio: string, param: string[]) => ({ method: 'frequency-pruning', ratio, param })
    await assert.rejects(planFromFlags(flags('0.25', ['ratio=0.5']), ckpt), (e: HarnessError) => e.code === 'INVALID_ARGUMENT' && /^--ratio 0\.25 and --param ratio=0\.5 disagree; pass the ratio once \(--ratio\)\.$/.test(e.message))
    const plan = await planFromFlags(flags('0.25', ['ratio=0.25']), ckpt)
    assert.equal(plan?.params.ratio, 0.25)
  })

  it('a bad value in a sweep config names the config entry, not a --param flag', async () => {
    const config = (params: Record<string, unknown>, method = 'magnitude-pruning') => parseConfig({ models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: [{ method, params }], ratios: [0.5] }, 'test.config.ts')
    await assert.rejects(expandVariants(config({ protectSuperExperts: 'yes' }, 'reap'), ROOT), (e: HarnessError) => e.code === 'INVALID_ARGUMENT' && /^methods\[reap\]\.params in the config: reap\.protectSuperExperts is a boolean/.test(e.message))
    await assert.rejects(expandVariants(config({ scroe: 'wanda' }), ROOT), (e: HarnessError) => e.code === 'UNKNOWN_NAME' && /^methods\[magnitude-pruning\]\.params in the config: Unknown parameter of method 'magnitude-pruning' 'scroe'\. Did you mean: score\?/.test(e.message))
    assert.equal((await expandVariants(config({ score: 'wanda' }), ROOT))[0].params.score, 'wanda')
  })
})
