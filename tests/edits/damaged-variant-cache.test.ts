// A damaged prepared-variant folder (ours, under .harness/variants) is detected on read and rebuilt
// with a warning naming the file, instead of failing every sweep cell for good.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { publishVariantFolder, readVariantFiles, variantFolderState } from '../../src/edits/variantFolder.ts'
import type { VariantEdits } from '../../src/edits/variantEdits.ts'
import { HarnessError } from '../../src/errors.ts'
import { runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { overrideValues } from '../../src/edits/overrideTensor.ts'

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
    assert.deepEqual(Array.from(overrideValues(back.edits.overrides['model.layers.0.mlp.gate.weight']!)), [0.5, -1.25, 3])
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

describe('a sweep over a damaged prepared-variant cache', () => {
  it('rebuilds the folder with a warning naming the file, instead of failing every cell for good', () => {
    const dir = tmpDir()
    writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 97 })
    const config = path.join(dir, 'c.config.ts')
    const body = { models: { m: 'm' }, methods: ['frequency-pruning'], ratios: [0.5], tasks: ['brown-cloze'], subset: { limit: 3 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 } }
    writeSweepConfig(config, body)
    const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
    const first = runCli(['sweep', '--config', config, '--db', path.join(dir, 'a.sqlite')], { env })
    assert.equal(first.status, 0, first.stderr)
    const variants = path.join(dir, 'home', 'variants')
    const folders = fs.readdirSync(variants).filter(f => f !== 'by-id') // the index of prepared variants (variantIndex.ts)
    assert.equal(folders.length, 1)
    const file = path.join(variants, folders[0]!, 'edits.json')
    fs.writeFileSync(file, '{"trunc\n')
    // A random-bytes calibration cache entry is recomputed, with a warning naming it.
    const calib = path.join(dir, 'home', 'calibration')
    const entries = fs.readdirSync(calib).filter(f => f.endsWith('.v8'))
    assert.equal(entries.length, 1)
    fs.writeFileSync(path.join(calib, entries[0]!), Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) % 256)))
    let stderr = ''
    for (const db of ['a.sqlite', 'b.sqlite']) {
      const again = runCli(['sweep', '--config', config, '--db', path.join(dir, db), '--json'], { env })
      assert.equal(again.status, 0, again.stderr)
      stderr += again.stderr
      assert.equal(JSON.parse(again.stdout.trim().split('\n').pop()!).failed, 0)
      if (db === 'a.sqlite') assert.ok(again.stderr.includes(`warning: damaged prepared-variant cache: ${file} is damaged`), again.stderr)
      assert.equal(variantFolderState(path.join(variants, folders[0]!)), 'valid')
      fs.writeFileSync(file, '{"trunc\n')
    }
    assert.ok(stderr.includes(`warning: damaged calibration cache ${path.join(calib, entries[0]!)}`), stderr)
  })
})
