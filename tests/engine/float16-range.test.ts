// A float16 graph refuses checkpoint weights beyond float16's range before it is built (graphStore.ts
// float16Overflows, graphSession.ts): a GPU would turn them into Inf, and onnxruntime's CPU provider,
// which computes float16 nodes in float32, gave finite scores instead (found by a fresh-user trial).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { openGraphSession } from '../../src/engine/graphSession.ts'
import { packBatch } from '../../src/engine/packing.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { encodeFromFloat32, maxAbsFinite } from '../../src/model/safetensors.ts'
import { readTensors, writeTensors } from '../helpers/rawSafetensors.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { runCli } from '../helpers/cli.ts'
import { checkModels } from '../../src/sweep/modelChecks.ts'
import type { VariantSlot } from '../../src/sweep/variantSlots.ts'

const dir = tmpDir()
const batch = packBatch([{ prefix: [1, 17, 250, 3, 99, 45], branches: [[5, 6]], scorePrefixFrom: 1 }], [0])

/** A tiny checkpoint whose tensor `name` (if given) is scaled by `factor`, written back in its own dtype. */
function model(label: string, dtype: 'BF16' | 'F32', scaled?: { pick: (names: string[]) => string; factor: number }): { dir: string; name?: string } {
  const d = path.join(dir, label)
  writeTinyCheckpoint(d, { family: 'mixtral', dtype, hidden: 32, heads: 4, kvHeads: 2, experts: 4, topK: 2, ffn: 16, layers: 1, seed: 9 })
  if (!scaled) return { dir: d }
  const file = path.join(d, fs.readdirSync(d).find(f => f.endsWith('.safetensors'))!)
  const tensors = readTensors(file)
  const name = scaled.pick([...tensors.keys()])
  const t = tensors.get(name)!
  const ckpt = openCheckpoint(d, { warn: () => {} })
  tensors.set(name, { ...t, bytes: encodeFromFloat32(ckpt.read(name).map(v => v * scaled.factor), dtype) })
  writeTensors(file, tensors)
  return { dir: d, name }
}

const expertDown = (names: string[]) => names.find(n => /experts\.0\.w2\.weight$/.test(n))!
const settings = (home: string) => ({ device: 'cpu' as const, threads: 1, cacheDir: home })

describe('float16 graphs and weights beyond float16 range', () => {
  it('maxAbsFinite: the largest finite magnitude in each dtype, Inf and NaN ignored', () => {
    const values = Float32Array.from([0.5, -70000, 3, Infinity, NaN, -Infinity, 1e-3])
    assert.equal(maxAbsFinite(encodeFromFloat32(values, 'F32'), 'F32'), 70000)
    assert.equal(maxAbsFinite(encodeFromFloat32(values, 'BF16'), 'BF16'), 70144) // 70000 rounded to bfloat16's 8 bits
    assert.equal(maxAbsFinite(encodeFromFloat32(Float32Array.from([0.5, -2, 65504, Infinity]), 'F16'), 'F16'), 65504)
    assert.equal(maxAbsFinite(new Uint8Array(0), 'BF16'), 0)
  })

  for (const dtype of ['BF16', 'F32'] as const) {
    it(`${dtype}: an expert weight up to 6.6e5 refuses --precision float16 with NUMERIC_FAILURE naming it; float32 still scores`, async () => {
      const { dir: d, name } = model(`big-${dtype}`, dtype, { pick: expertDown, factor: 1e6 })
      const ckpt = openCheckpoint(d, { warn: () => {} })
      const home = path.join(dir, `home-${dtype}`)
      await assert.rejects(openGraphSession(ckpt, emptyEdits(), { precision: 'float16' }, settings(home)), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'NUMERIC_FAILURE')
        assert.ok(e.message.includes(`'${name}'`), e.message)
        assert.match(e.message, /--precision float32/)
        return true
      })
      // The answer is kept beside the finite marker: the second refusal reads no weight.
      const markers = fs.readdirSync(path.join(home, 'graphs')).filter(f => f.startsWith('.float16-range-'))
      assert.equal(markers.length, 1)
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(home, 'graphs', markers[0]!), 'utf8')).overflows.map((o: { name: string }) => o.name), [name])
      await assert.rejects(openGraphSession(ckpt, emptyEdits(), { precision: 'float16' }, { ...settings(home), weights: 'memory' }), /NUMERIC_FAILURE|float16's range/)
      const s = await openGraphSession(ckpt, emptyEdits(), {}, settings(home))
      try {
        const lp = (await s.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array
        assert.ok(lp.every(Number.isFinite))
      } finally {
        await s.release()
      }
    })
  }

  it('eval refuses a float16 run before calibrating or applying the method (it did so only after, hours on a real model)', () => {
    const { dir: d, name } = model('big-eval', 'BF16', { pick: expertDown, factor: 1e6 })
    const home = path.join(dir, 'home-eval')
    const r = runCli(['eval', '--model', d, '--method', 'reap', '--ratio', '0.25', '--calibration-sequences', '2', '--calibration-length', '16', '--precision', 'float16', '--tasks', 'brown-cloze', '--limit', '2'], { env: { MOE_HARNESS_HOME: home } })
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /NUMERIC_FAILURE/)
    assert.ok(r.stderr.includes(`'${name}'`), r.stderr)
    assert.ok(!fs.existsSync(path.join(home, 'calibration')), 'no calibration statistics were computed')
    assert.doesNotMatch(r.stderr, /calibrat(ing|ed)|prepared/i)
  })

  it("a sweep's model check refuses the model on a device whose sessions are float16, and not on the CPU (float32)", () => {
    const { dir: d, name } = model('big-sweep', 'BF16', { pick: expertDown, factor: 1e6 })
    const ckpt = openCheckpoint(d, { warn: () => {} })
    const slots = [{ spec: { model: 'big' }, planned: { status: 'planned' } }] as unknown as VariantSlot[]
    const logged: string[] = []
    assert.deepEqual(checkModels(slots, new Map([['big', ckpt], ['other', ckpt]]), line => logged.push(line), 'cpu'), [])
    const refused = checkModels(slots, new Map([['big', ckpt], ['other', ckpt]]), line => logged.push(line), 'webgpu')
    assert.deepEqual(refused.map(f => [f.name, f.error.code]), [['big', 'NUMERIC_FAILURE']])
    assert.ok(logged.some(l => l.includes(name!)), logged.join('\n'))
  })

  it('weights within range open a float16 graph, with and without a graph cache', async () => {
    const { dir: d } = model('in-range', 'BF16')
    const ckpt = openCheckpoint(d, { warn: () => {} })
    for (const cacheDir of [path.join(dir, 'home-ok'), undefined]) {
      const s = await openGraphSession(ckpt, emptyEdits(), { precision: 'float16' }, { device: 'cpu', threads: 1, cacheDir, weights: cacheDir ? 'mapped' : 'memory' })
      await s.release()
    }
  })
})
