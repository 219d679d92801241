// A method's apply runs in a worker thread (src/methods/applyInWorker.ts) and gives the edits the main
// thread gives, bit for bit: one-pass methods with and without calibration statistics, layer-by-layer
// methods driven by sequential calibration (the live edits the engine reads after each layer included),
// and edits stored to disk past the spill budget (file references into this process's spill folder).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { getCalibrationStats } from '../../src/calibration/cache.ts'
import { sequentialStats } from '../../src/calibration/sequential.ts'
import { releaseSpilled, spillFolderPath } from '../../src/edits/overrideSpill.ts'
import { isStoredOverride } from '../../src/edits/overrideTensor.ts'
import { contentHash } from '../../src/edits/variantEdits.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { moeLayers } from '../../src/model/modelSpec.ts'
import { applyMethod, startMethod } from '../../src/methods/applyMethod.ts'
import { applyMethodInWorker, startMethodInWorker } from '../../src/methods/applyInWorker.ts'
import { loadMethod, needsOf, resolveParams, unprunedNeedsOf } from '../../src/methods/registry.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir, useHarnessHome } from '../helpers/tmp.ts'

const dir = tmpDir()
useHarnessHome(path.join(dir, 'home'))
const ckpt = openCheckpoint(writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 8, topK: 2, layers: 3, hidden: 32, ffn: 16, seed: 81 }).dir)
const engine = { device: 'cpu' as const, threads: 1 }
const calibration = { source: 'builtin', sequences: 4, length: 32, seed: 7 }
const ALL_ONE_PASS = ['routing', 'expertOutputs', 'expertOutputsAll', 'inputNorms', 'layerTargets'] as const
const stats = (await getCalibrationStats(ckpt, calibration, [...ALL_ONE_PASS], engine)).data

/** Hooks, overrides (by digest) and report: everything a variant is made of. */
const fingerprint = (a: Awaited<ReturnType<typeof applyMethod>>) => ({ hash: contentHash(a.edits), report: JSON.stringify(a.report), warnings: a.warnings })

describe('method apply in a worker thread', () => {
  const onePass: [method: string, params: Record<string, string | number | boolean>][] = [
    ['magnitude-pruning', { ratio: 0.5 }], // no statistics; edits every expert weight (float32 buffers moved back)
    ['magnitude-pruning', { ratio: 0.5, score: 'wanda', calibration: 'one-pass' }], // inputNorms, applyLayer per layer
    ['novice-replacement', { ratio: 0.25 }], // routing + expertOutputs; novice vectors
    ['hc-smoe', { ratio: 0.5 }], // routing + expertOutputsAll; bindings
  ]
  for (const [name, given] of onePass) {
    it(`${name} ${JSON.stringify(given)}: the same edits and report as in the main thread`, async () => {
      const method = await loadMethod(name)
      const params = resolveParams(method, given)
      const data = needsOf(method, params).length ? stats : undefined
      const here = await applyMethod(method, params, ckpt, data, 'seed-1')
      const there = await applyMethodInWorker(method, params, ckpt, data, 'seed-1')
      assert.deepEqual(fingerprint(there), fingerprint(here))
      assert.deepEqual(there.edits, here.edits)
      assert.ok(there.seconds > 0 && Number.isFinite(there.seconds))
    })
  }

  for (const [name, given] of [['naee', { ratio: 0.5 }], ['magnitude-pruning', { ratio: 0.5, score: 'wanda' }]] as const) {
    it(`${name} with sequential calibration: each layer's edits reach the engine as in the main thread`, async () => {
      const method = await loadMethod(name)
      const params = resolveParams(method, given)
      const unpruned = unprunedNeedsOf(method, params).length ? stats : undefined
      const cacheDir = path.join(dir, `seq-${name}`)
      const here = startMethod(method, params, ckpt, 'seed-2', unpruned)
      const seqHere = await sequentialStats(ckpt, calibration, needsOf(method, params), here, { ...engine, cacheDir })
      const applied = here.finish()
      const there = await startMethodInWorker(method, params, ckpt, 'seed-2', unpruned)
      const seqThere = await sequentialStats(ckpt, calibration, needsOf(method, params), there, { ...engine, cacheDir })
      // Every layer's statistics came from the cache the main-thread run wrote: the key of layer L covers the
      // edits of the layers before it, so the worker's live edits matched the main thread's after every layer.
      assert.equal(seqThere.layersFromCache, moeLayers(ckpt.spec).length)
      assert.equal(seqHere.layersFromCache, 0)
      const appliedThere = await there.finish()
      await there.close()
      assert.deepEqual(fingerprint(appliedThere), fingerprint(applied))
      assert.equal(contentHash(there.edits), contentHash(applied.edits))
    })
  }

  it('edits past the spill budget come back as files in this process\'s spill folder, same content hash', async () => {
    const method = await loadMethod('magnitude-pruning')
    const params = resolveParams(method, { ratio: 0.5 })
    const memory = await applyMethod(method, params, ckpt, undefined, 'seed-3')
    const spilled = await applyMethodInWorker(method, params, ckpt, undefined, 'seed-3', { spillBytes: 0 })
    const stored = Object.values(spilled.edits.overrides).filter(isStoredOverride)
    assert.equal(stored.length, Object.keys(memory.edits.overrides).length)
    assert.ok(stored.every(t => path.dirname(t.file) === spillFolderPath() && fs.existsSync(t.file)))
    assert.equal(contentHash(spilled.edits), contentHash(memory.edits))
    releaseSpilled(spilled.edits) // the main thread owns the worker's spill files
    assert.ok(stored.every(t => !fs.existsSync(t.file)))
  })

  it('a method error crosses the thread with its code and fields', async () => {
    const method = await loadMethod('frequency-pruning')
    const params = resolveParams(method, { ratio: 0.5 })
    // Statistics without routing: the method reads what was not computed.
    const starved = { info: stats.info }
    const expected = await applyMethod(method, params, ckpt, starved, 'seed-4').then(() => undefined, e => e)
    const got = await applyMethodInWorker(method, params, ckpt, starved, 'seed-4').then(() => undefined, e => e)
    assert.ok(expected && got, 'both fail')
    assert.deepEqual({ code: got.code, message: got.message, method: got.method, phase: got.phase, name: got.name },
      { code: expected.code, message: expected.message, method: expected.method, phase: expected.phase, name: expected.name })
    assert.equal(got.code, 'METHOD_FAILED')
    // The worker is still usable afterwards.
    const ok = await applyMethodInWorker(method, params, ckpt, stats, 'seed-4')
    assert.deepEqual(fingerprint(ok), fingerprint(await applyMethod(method, params, ckpt, stats, 'seed-4')))
  })

  it('a layer-by-layer run that fails in a layer fails as in the main thread, and closing it frees the thread', async () => {
    const method = await loadMethod('naee')
    const params = resolveParams(method, { ratio: 0.5 })
    const starved = { info: stats.info } // no layerTargets of the unpruned model
    const layer = moeLayers(ckpt.spec)[0].index
    const expected = await startMethod(method, params, ckpt, 'seed-5', starved).layer(layer, stats).then(() => undefined, e => e)
    const run = await startMethodInWorker(method, params, ckpt, 'seed-5', starved)
    const got = await run.layer(layer, stats).then(() => undefined, e => e)
    await run.close()
    assert.ok(expected && got, 'both fail')
    assert.deepEqual([got.code, got.message, got.method, got.phase], [expected.code, expected.message, expected.method, expected.phase])
    assert.equal(got.phase, `applyLayer ${layer}`)
    const ok = await applyMethodInWorker(await loadMethod('frequency-pruning'), resolveParams(await loadMethod('frequency-pruning'), { ratio: 0.5 }), ckpt, stats, 'seed-5')
    assert.ok(Object.keys(ok.edits.layers).length > 0)
  })
})
