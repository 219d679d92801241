// A method's ctx.rng is seeded from what it is asked to do, not from its code: editing a comment in
// the method (or a helper it imports) makes a new variant id, but must not redraw a random method.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { methodSeedKey, variantKey } from '../../src/identity/keys.ts'
import { mulberry32, seedFromString } from '../../src/util/rng.ts'

const base = { modelId: 'm'.repeat(32), method: 'random-drop', params: { ratio: 0.5 }, calibrationKey: null, sequential: false }

describe('methodSeedKey', () => {
  it('ignores the code hash the variant id covers, and follows everything else', () => {
    const a = variantKey({ ...base, methodCode: 'code-1' }), b = variantKey({ ...base, methodCode: 'code-2' })
    assert.notEqual(a, b, 'new code, new variant')
    assert.equal(methodSeedKey(base), methodSeedKey({ ...base }))
    const draws = (key: string) => { const r = mulberry32(seedFromString(key)); return [r(), r(), r()] }
    assert.deepEqual(draws(methodSeedKey(base)), draws(methodSeedKey({ ...base })))
    for (const other of [{ params: { ratio: 0.25 } }, { modelId: 'n'.repeat(32) }, { method: 'other' }, { calibrationKey: 'c' }, { sequential: true }]) {
      assert.notEqual(methodSeedKey({ ...base, ...other }), methodSeedKey(base), JSON.stringify(other))
    }
    assert.match(methodSeedKey(base), /^[0-9a-f]{24}$/)
    assert.notEqual(methodSeedKey(base), a, 'a seed is not a variant id')
  })
})
