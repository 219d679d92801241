// The variant-edit model's one owner (issue 12 §2): the content hash sees every hook, the prepared
// folder round-trips the edits exactly, and "neurons kept" is ceil(rho·F) everywhere it is counted.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { contentHash, emptyEdits, neuronsKept, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { isVariantFolder, publishVariantFolder, readVariantFiles } from '../../src/edits/variantFolder.ts'
import { BASELINE_CONTENT_HASH, isBaselineContent } from '../../src/identity/keys.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { accountVariant } from '../../src/variants/accounting.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 8, ffn: 6, seed: 5 })
const ckpt = openCheckpoint(path.join(dir, 'model'))

function sample(): VariantEdits {
  return {
    layers: { 0: { disabled: [3], bindings: { 1: 0 } }, 1: { novices: { 2: Float32Array.from({ length: 8 }, (_, i) => i / 8) }, neuronKeep: 0.5 } },
    overrides: { [ckpt.names.layers[0].experts![0].gate]: new Float32Array(6 * 8).fill(0.25) },
  }
}

describe('variant edits', () => {
  it('the content hash sees binding maps (they once hashed as {}), and no edits is the baseline', () => {
    const a = sample(), b = sample()
    b.layers[0].bindings = { 2: 0 }
    assert.notEqual(contentHash(a), contentHash(b))
    assert.equal(contentHash(a), contentHash(sample()))
    assert.equal(contentHash(emptyEdits()), BASELINE_CONTENT_HASH)
    assert.ok(isBaselineContent(contentHash({ layers: { 0: {} }, overrides: {} })), 'an empty layer entry is no edit')
    assert.ok(!isBaselineContent(contentHash(a)))
  })

  it('a published folder reads back the same edits and is recognised; a half-written one is not', () => {
    const folder = path.join(dir, 'variants', 'v1')
    assert.equal(isVariantFolder(folder), false)
    publishVariantFolder(folder, ckpt.dir, sample(), n => ckpt.tensors.get(n)!.dtype)
    assert.equal(isVariantFolder(folder), true)
    const back = readVariantFiles(folder)
    assert.equal(back.modelDir, ckpt.dir)
    assert.equal(contentHash(back.edits), contentHash(sample()))
    assert.deepEqual(back.edits.layers[0], sample().layers[0])
    // Published again from the same model: kept as it is (no temporary folders left behind).
    publishVariantFolder(folder, ckpt.dir, sample(), n => ckpt.tensors.get(n)!.dtype)
    assert.deepEqual(fs.readdirSync(path.dirname(folder)), ['v1'])
    fs.mkdirSync(path.join(dir, 'variants', 'empty'))
    assert.equal(isVariantFolder(path.join(dir, 'variants', 'empty')), false)
  })

  it('neurons kept is ceil(rho F), and the accounting counts exactly those neurons', () => {
    assert.equal(neuronsKept(0.7, 6), 5) // 4.2 → 5
    assert.equal(neuronsKept(0.75, 8), 6)
    assert.equal(neuronsKept(0.01, 6), 1)
    const active = (rho: number) => accountVariant(ckpt, { layers: { 0: { neuronKeep: rho }, 1: { neuronKeep: rho } }, overrides: {} }).activeParamsPerToken
    // rho 0.7 and 5/6 keep the same 5 of 6 neurons, so they compute the same parameters per token.
    assert.equal(active(0.7), active(5 / 6))
    const full = accountVariant(ckpt, emptyEdits()).activeParamsPerToken
    // Per layer and routed expert (top-2): up and down lose one of six neurons each (2 · 8 hidden).
    assert.equal(full - active(0.7), 2 * 2 * 2 * 8)
  })
})
