// A damaged prepared-variant folder (ours, under .harness/variants) is detected on read and rebuilt
// with a warning naming the file, instead of failing every sweep cell for good.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { publishVariantFolder, readVariantFiles, variantFolderState } from '../../src/edits/variantFolder.ts'
import type { VariantEdits } from '../../src/edits/variantEdits.ts'
import { HarnessError } from '../../src/errors.ts'
import { tmpDir } from '../helpers/tmp.ts'

const edits = (): VariantEdits => ({
  layers: { 1: { disabled: [2, 0] } },
  overrides: { 'model.layers.0.mlp.gate.weight': Float32Array.from([0.5, -1.25, 3]) },
})

function published(name: string): string {
  const dir = path.join(tmpDir(), 'variants', name)
  publishVariantFolder(dir, '/models/tiny', edits(), () => 'F32', () => assert.fail('no warning for a fresh folder'))
  return dir
}

describe('damaged prepared-variant cache', () => {
  it('a truncated edits.json is reported as damaged, naming the file, and rebuilt on publish', () => {
    const dir = published('trunc')
    const file = path.join(dir, 'edits.json')
    fs.writeFileSync(file, '{"trunc\n')
    const warnings: string[] = []
    assert.equal(variantFolderState(dir, m => warnings.push(m)), 'damaged')
    assert.equal(warnings.length, 1)
    assert.match(warnings[0]!, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is damaged`))
    assert.throws(() => readVariantFiles(dir), (e: unknown) => e instanceof HarnessError && e.code === 'VARIANT_INVALID' && e.message.includes(file) && e.message.includes('rerun'))

    const republishWarnings: string[] = []
    publishVariantFolder(dir, '/models/tiny', edits(), () => 'F32', m => republishWarnings.push(m))
    assert.equal(republishWarnings.length, 1)
    assert.equal(variantFolderState(dir), 'valid')
    const back = readVariantFiles(dir)
    assert.equal(back.modelDir, '/models/tiny')
    assert.deepEqual(back.edits.layers[1], { disabled: [2, 0] })
    assert.deepEqual(Array.from(back.edits.overrides['model.layers.0.mlp.gate.weight']!), [0.5, -1.25, 3])
    assert.deepEqual(fs.readdirSync(path.dirname(dir)), ['trunc'], 'no staged or set-aside folders are left behind')
  })

  it('valid JSON of the wrong shape and random-bytes overrides are damaged too', () => {
    const a = published('shape')
    fs.writeFileSync(path.join(a, 'edits.json'), '[1, 2]')
    assert.equal(variantFolderState(a, () => {}), 'damaged')
    const b = published('bytes')
    const ov = path.join(b, 'overrides.safetensors')
    fs.writeFileSync(ov, Buffer.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9]))
    const warnings: string[] = []
    assert.equal(variantFolderState(b, m => warnings.push(m)), 'damaged')
    assert.ok(warnings[0]!.includes(ov), warnings[0])
    publishVariantFolder(b, '/models/tiny', edits(), () => 'F32', () => {})
    assert.equal(variantFolderState(b), 'valid')
  })

  it('an intact folder is valid and left alone', () => {
    const dir = published('ok')
    const before = fs.statSync(path.join(dir, 'edits.json')).mtimeMs
    assert.equal(variantFolderState(dir, () => assert.fail('no warning')), 'valid')
    publishVariantFolder(dir, '/models/tiny', edits(), () => 'F32', () => assert.fail('no warning'))
    assert.equal(fs.statSync(path.join(dir, 'edits.json')).mtimeMs, before)
    assert.equal(variantFolderState(path.join(dir, 'nope')), 'missing')
  })
})
