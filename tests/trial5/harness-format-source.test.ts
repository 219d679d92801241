// Fresh-user trial 5: a harness-format variant (transform output with moe_harness_variant.json, e.g.
// MoNE novices) used as the --model of a further command. Found: `transform` of it wrote only the new
// method's edits, dropping the source's novices (a magnitude-pruned novice variant came out as a plain
// HF checkpoint scoring word perplexity 1224 instead of 1761), and removing a novice slot
// (--mask-experts, or a pruning method on it) failed with "expert 0 is both disabled and a novice".
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { mergeEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const novice = path.join(dir, 'novice')
const CAL = ['--calibration-sequences', '4', '--calibration-length', '64']

function perplexity(args: string[]): number {
  const r = runCli(['eval', ...args, '--tasks', 'brown-perplexity', '--limit', '5', '--json'], { env })
  assert.equal(r.status, 0, r.stderr)
  return lastJson(r.stdout).results['brown-perplexity'].word_perplexity
}

describe('a harness-format variant as the source model', () => {
  let novices: Record<string, number[]> = {}
  before(() => {
    const r = runCli(['transform', '--model', 'models/tiny-moe', '--method', 'novice-replacement', '--ratio', '0.25', ...CAL, '--out', novice], { env })
    assert.equal(r.status, 0, r.stderr)
    const manifest = JSON.parse(fs.readFileSync(path.join(novice, 'moe_harness_variant.json'), 'utf8'))
    novices = Object.fromEntries(Object.entries(manifest.layers as Record<string, { novices: number[] }>).map(([l, h]) => [l, h.novices]))
    assert.equal(Object.keys(novices).length, 4)
  })

  it('transform keeps the source novices under the new method, and scores as eval of the method on the source', () => {
    const out = path.join(dir, 'novice-magnitude')
    const r = runCli(['transform', '--model', novice, '--method', 'magnitude-pruning', '--ratio', '0.25', '--out', out, '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.equal(lastJson(r.stdout).format, 'harness')
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'moe_harness_variant.json'), 'utf8'))
    assert.deepEqual(Object.fromEntries(Object.entries(manifest.layers as Record<string, { novices: number[] }>).map(([l, h]) => [l, h.novices])), novices)
    const written = perplexity(['--model', out])
    const direct = perplexity(['--model', novice, '--method', 'magnitude-pruning', '--ratio', '0.25'])
    assert.ok(Math.abs(written - direct) <= 1e-9 * direct, `${written} vs ${direct}`)
    assert.notEqual(written, perplexity(['--model', novice]), 'the method changed the model')
  })

  it('removing every novice slot gives the source model with those slots removed', () => {
    const mask = Object.entries(novices).map(([l, e]) => `${l}:${e.join(',')}`).join(';')
    const fromNovice = perplexity(['--model', novice, '--mask-experts', mask])
    const fromBase = perplexity(['--model', 'models/tiny-moe', '--mask-experts', mask])
    assert.equal(fromNovice, fromBase)
    assert.notEqual(fromNovice, perplexity(['--model', novice]))
  })

  it('mergeEdits: a slot the later edits remove loses its novice and binding; the others stay', () => {
    const v = (x: number) => new Float32Array([x, x])
    const base: VariantEdits = { overrides: {}, layers: { 0: { novices: { 1: v(1), 3: v(3) }, bindings: { 5: 4, 6: 4 }, neuronKeep: 0.5 } } }
    const merged = mergeEdits(base, { overrides: {}, layers: { 0: { disabled: [3, 6] } } })
    assert.deepEqual(merged.layers[0].disabled, [3, 6])
    assert.deepEqual(Object.keys(merged.layers[0].novices!), ['1'])
    assert.deepEqual(merged.layers[0].bindings, { 5: 4 })
    assert.equal(merged.layers[0].neuronKeep, 0.5)
    const all = mergeEdits(base, { overrides: {}, layers: { 0: { disabled: [1, 3, 5, 6] } } })
    assert.equal(all.layers[0].novices, undefined)
    assert.equal(all.layers[0].bindings, undefined)
  })
})
