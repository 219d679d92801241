// Edited tensors stored on disk instead of held as float32 (edits/overrideTensor.ts, overrideSpill.ts):
// a method whose edits pass the spill budget gets them written in the checkpoint's dtype and replaced
// by file references; the variant hashes, accounts and scores exactly as with everything in memory;
// the graph maps them from their file (no derived copy); a published folder hard-links the spill
// files and reads back as references; a sweep through the pool gives the same scores either way.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { releaseSpilled, spillOverrides } from '../../src/edits/overrideSpill.ts'
import { isStoredOverride, overrideValues } from '../../src/edits/overrideTensor.ts'
import { contentHash, emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { publishVariantFolder, readVariantFiles, variantFolderState } from '../../src/edits/variantFolder.ts'
import { openGraphSession } from '../../src/engine/graphSession.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { applyMethod } from '../../src/methods/applyMethod.ts'
import { loadMethod, resolveParams } from '../../src/methods/registry.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { releaseTemporary, storedScoringGraph } from '../../src/onnx/graphStore.ts'
import { accountVariant } from '../../src/variants/accounting.ts'
import { planVariant, prepareVariant } from '../../src/variants/prepare.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { ROOT, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { snapshot } from '../sweep/storeSnapshot.ts'

const dir = tmpDir()
process.env.MOE_HARNESS_HOME = path.join(dir, 'home') // spill files and graph cache stay inside the test folder
const modelDir = path.join(dir, 'qwen3')
writeTinyCheckpoint(modelDir, { family: 'qwen3_moe', dtype: 'BF16', hidden: 32, heads: 4, kvHeads: 2, experts: 8, topK: 2, ffn: 12, layers: 2, seed: 21 })
const ckpt: Checkpoint = openCheckpoint(modelDir, { warn: () => {} })
const dtypeOf = (n: string) => ckpt.tensors.get(n)!.dtype

const requests: ScoreRequest[] = [
  { prefix: [1, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33], branches: [[5, 6, 7], [8]], scorePrefixFrom: 1 },
  { prefix: [9, 10, 11, 12, 13, 200], branches: [[14, 15]], scorePrefixFrom: 1 },
]
const batch = packBatch(requests, [0, 1])

async function scores(edits: VariantEdits, cacheDir: string): Promise<Float32Array> {
  const session = await openGraphSession(ckpt, edits, {}, { device: 'cpu', threads: 1, cacheDir })
  try {
    return (await session.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array
  } finally {
    await session.release()
  }
}

async function magnitude(spillBytes: number): Promise<VariantEdits> {
  const method = await loadMethod('magnitude-pruning')
  return (await applyMethod(method, resolveParams(method, { ratio: 0.5 }), ckpt, undefined, 'seed', undefined, { spillBytes })).edits
}

describe('stored overrides', () => {
  it('a method over its spill budget stores its edits: same values, content hash, accounting and scores; the graph maps them', async () => {
    const inMemory = await magnitude(Infinity)
    const spilled = await magnitude(0)
    const names = Object.keys(inMemory.overrides).sort()
    assert.equal(names.length, 2 * 8 * 3) // every expert matrix of both layers
    assert.deepEqual(Object.keys(spilled.overrides).sort(), names)
    assert.ok(Object.values(inMemory.overrides).every(t => !isStoredOverride(t)))
    assert.ok(Object.values(spilled.overrides).every(isStoredOverride), 'a zero budget stores every edited tensor')
    for (const n of names) assert.deepEqual(overrideValues(spilled.overrides[n]!), overrideValues(inMemory.overrides[n]!), n)
    assert.equal(contentHash(spilled), contentHash(inMemory))
    const acc = accountVariant(ckpt, spilled), accMem = accountVariant(ckpt, inMemory)
    assert.equal(acc.nonzeroParams, accMem.nonzeroParams)
    assert.ok(acc.nonzeroParams < acc.totalParams - 1000, 'half of the expert weights are zero')

    const a = await scores(inMemory, path.join(dir, 'cache-a'))
    const b = await scores(spilled, path.join(dir, 'cache-b'))
    assert.deepEqual(b, a, 'bit-identical log-probabilities')
    // The in-memory variant's graph writes its edited tensors to derived.bin; the stored one points at the spill files.
    const mem = storedScoringGraph(ckpt, inMemory, {}, path.join(dir, 'cache-a'))
    const disk = storedScoringGraph(ckpt, spilled, {}, path.join(dir, 'cache-b'))
    releaseTemporary(mem)
    releaseTemporary(disk)
    assert.ok(fs.statSync(path.join(mem.dir, 'derived.bin')).size > 0)
    assert.equal(fs.existsSync(path.join(disk.dir, 'derived.bin')), false, 'no second copy of stored tensors')
  })

  it('a published folder links the spill files, reads back as references and survives releasing the spill', async () => {
    const spilled = await magnitude(0)
    const reference = await scores(spilled, path.join(dir, 'cache-c'))
    const folder = path.join(dir, 'variants', 'v1')
    publishVariantFolder(folder, modelDir, spilled, dtypeOf, () => {})
    const files = fs.readdirSync(folder).filter(f => f.startsWith('overrides'))
    assert.ok(files.length > 1 && files.every(f => /^overrides-\d+\.safetensors$/.test(f)), files.join(','))
    assert.ok(files.every(f => fs.statSync(path.join(folder, f)).nlink === 2), 'hard links to the spill files, not copies')
    releaseSpilled(spilled)
    assert.ok(files.every(f => fs.statSync(path.join(folder, f)).nlink === 1))
    const back = readVariantFiles(folder)
    assert.ok(Object.values(back.edits.overrides).every(t => isStoredOverride(t) && t.digest && path.dirname(t.file) === folder))
    assert.equal(contentHash(back.edits), contentHash(spilled))
    assert.deepEqual(await scores(back.edits, path.join(dir, 'cache-d')), reference)
  })

  it('a tensor set again after it was stored is published once, with its latest values', async () => {
    const [first, second] = ckpt.names.layers[0]!.experts!.slice(0, 2).map(e => e.gate)
    const edits = emptyEdits()
    edits.overrides[first] = ckpt.read(first).map(v => v * 0)
    edits.overrides[second] = ckpt.read(second).map(v => -v)
    spillOverrides(edits.overrides, dtypeOf)
    assert.ok(isStoredOverride(edits.overrides[first]!))
    const latest = ckpt.read(first) // in memory again, superseding the stored zeros
    edits.overrides[first] = latest
    const folder = path.join(dir, 'variants', 'v2')
    publishVariantFolder(folder, modelDir, edits, dtypeOf, () => {})
    const back = readVariantFiles(folder).edits
    assert.deepEqual(Object.keys(back.overrides).sort(), [first, second].sort())
    assert.deepEqual(overrideValues(back.overrides[first]!), latest)
    assert.deepEqual(overrideValues(back.overrides[second]!), ckpt.read(second).map(v => -v))
    // The spill file also held the superseded zeros, so it was rewritten, not linked.
    assert.ok(fs.readdirSync(folder).filter(f => f.startsWith('overrides')).every(f => fs.statSync(path.join(folder, f)).nlink === 1))
  })

  it('Wanda with sequential calibration runs its layer slices on the stored edits of the earlier layers: same variant', async () => {
    const prepare = async (home: string, spillMb?: string) => {
      const saved = { home: process.env.MOE_HARNESS_HOME, spill: process.env.MOE_HARNESS_SPILL_MB }
      process.env.MOE_HARNESS_HOME = path.join(dir, home) // its own calibration cache: the slices really run
      if (spillMb !== undefined) process.env.MOE_HARNESS_SPILL_MB = spillMb
      try {
        const plan = await planVariant(ckpt, 'magnitude-pruning', { ratio: 0.5, score: 'wanda' })
        assert.equal(plan.procedure, 'sequential')
        return await prepareVariant(ckpt, plan, { calibration: { source: 'builtin', sequences: 4, length: 32, seed: 5 }, device: 'cpu', threads: 1 })
      } finally {
        process.env.MOE_HARNESS_HOME = saved.home
        if (saved.spill === undefined) delete process.env.MOE_HARNESS_SPILL_MB
        else process.env.MOE_HARNESS_SPILL_MB = saved.spill
      }
    }
    const held = await prepare('home-wanda-held')
    const stored = await prepare('home-wanda-stored', '0')
    assert.ok(Object.values(stored.edits.overrides).every(isStoredOverride))
    assert.ok(Object.values(held.edits.overrides).every(t => !isStoredOverride(t)))
    assert.equal(contentHash(stored.edits), contentHash(held.edits))
    assert.equal(stored.calibration?.fromCache, false)
  })

  it('a sweep whose method spills every tensor scores what one holding them in memory scores', () => {
    const config = (name: string) => {
      const file = path.join(dir, `${name}.config.ts`)
      fs.writeFileSync(file, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify({
        models: { q: modelDir }, methods: ['magnitude-pruning'], ratios: [0.5], tasks: ['brown-cloze'], subset: { sample: 8 }, pool: { workers: 1, threads: 1 },
      })})\n`)
      return file
    }
    const run = (name: string, env: Record<string, string>) => {
      const db = path.join(dir, `${name}.sqlite`)
      const r = runCli(['sweep', '--config', config(name), '--db', db], { env: { MOE_HARNESS_HOME: path.join(dir, `home-${name}`), ...env } })
      assert.equal(r.status, 0, r.stderr)
      return db
    }
    const held = run('held', {})
    const spilled = run('spilled', { MOE_HARNESS_SPILL_MB: '0' })
    assert.deepEqual(snapshot(spilled), snapshot(held))
    const variants = path.join(dir, 'home-spilled', 'variants')
    const folders = fs.readdirSync(variants).filter(f => !f.startsWith('.'))
    assert.ok(folders.some(f => fs.readdirSync(path.join(variants, f)).some(n => /^overrides-\d+\.safetensors$/.test(n))), 'the variant folder holds the linked spill files')
    assert.deepEqual(fs.readdirSync(variants).filter(f => f.startsWith('.spill-')), [], 'the spill folder is gone after the run')
    const store = new ResultsStore(spilled, { readonly: true })
    assert.equal(store.all<{ n: number }>("SELECT COUNT(*) AS n FROM runs WHERE status = 'complete'")[0].n, 1)
    store.close()

    // A lost overrides file must not score the unedited weights under the method's name: the folder is
    // damaged, rebuilt with a warning, and the new store gets the same scores.
    const folder = path.join(variants, folders.find(f => fs.readdirSync(path.join(variants, f)).some(n => n.startsWith('overrides')))!)
    fs.rmSync(path.join(folder, fs.readdirSync(folder).find(n => n.startsWith('overrides'))!))
    const db = path.join(dir, 'after-loss.sqlite')
    const r = runCli(['sweep', '--config', path.join(dir, 'spilled.config.ts'), '--db', db], { env: { MOE_HARNESS_HOME: path.join(dir, 'home-spilled') } })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stderr, /damaged prepared-variant cache: .*overrides-\d+\.safetensors is damaged \(it is missing\); rebuilding it/)
    assert.deepEqual(snapshot(db), snapshot(held))
  })

  it('a variant folder is damaged when an overrides file is missing, rewritten at the same size, or unlisted (older harness)', async () => {
    const spilled = await magnitude(0)
    const make = (name: string) => {
      const folder = path.join(dir, 'variants-damage', name)
      publishVariantFolder(folder, modelDir, spilled, dtypeOf, () => {})
      return folder
    }
    const state = (folder: string) => {
      const warnings: string[] = []
      return { state: variantFolderState(folder, m => warnings.push(m)), warnings }
    }
    const intact = make('intact')
    assert.deepEqual(state(intact), { state: 'valid', warnings: [] })

    const lost = make('lost')
    fs.rmSync(path.join(lost, 'overrides-1.safetensors'))
    assert.equal(state(lost).state, 'damaged')
    assert.match(state(lost).warnings[0]!, /overrides-1\.safetensors is damaged \(it is missing\)/)
    assert.throws(() => readVariantFiles(lost), (e: any) => e.code === 'VARIANT_INVALID' && /delete .* and rerun/.test(e.message))

    const rewritten = make('rewritten')
    const file = path.join(rewritten, 'overrides-0.safetensors')
    const bytes = fs.readFileSync(file)
    bytes[bytes.length - 1] ^= 0xff // one value changed, same size
    // A new file renamed over it: these folders hard-link the same spill files, which must stay intact.
    fs.writeFileSync(`${file}.new`, bytes)
    fs.renameSync(`${file}.new`, file)
    assert.match(state(rewritten).warnings[0] ?? '', /overrides-0\.safetensors is damaged \(the values of '.*' changed after the variant was written/)

    // Copied without its mtimes (cp without -p): the values are checked against their digests, not rebuilt.
    const copied = make('copied')
    for (const f of fs.readdirSync(copied).filter(n => n.startsWith('overrides'))) fs.utimesSync(path.join(copied, f), new Date(), new Date(Date.now() + 5000))
    assert.deepEqual(state(copied), { state: 'valid', warnings: [] })

    // Named by its content hash (as the sweep names it), an edited edits.json no longer matches: one
    // overrides file dropped together with its entry would otherwise score half-edited weights.
    const named = make(`${'0'.repeat(16)}-${contentHash(spilled)}`)
    assert.deepEqual(state(named), { state: 'valid', warnings: [] })
    const editsFile = path.join(named, 'edits.json')
    const listed = JSON.parse(fs.readFileSync(editsFile, 'utf8'))
    delete listed.overrides['overrides-1.safetensors']
    fs.writeFileSync(editsFile, JSON.stringify(listed))
    fs.rmSync(path.join(named, 'overrides-1.safetensors'))
    assert.match(state(named).warnings[0] ?? '', /edits\.json is damaged \(its edits hash to [0-9a-f]{24}, not to the [0-9a-f]{24} the folder was written for\)/)

    const legacy = make('legacy')
    const json = JSON.parse(fs.readFileSync(path.join(legacy, 'edits.json'), 'utf8'))
    delete json.overrides
    fs.writeFileSync(path.join(legacy, 'edits.json'), JSON.stringify(json))
    assert.match(state(legacy).warnings[0] ?? '', /written by an older harness/)
    // Publishing again replaces it with a complete folder.
    publishVariantFolder(legacy, modelDir, spilled, dtypeOf, () => {})
    assert.equal(state(legacy).state, 'valid')
  })

  it('every kind of edit reads back from a folder named by its content hash with that same hash', async () => {
    const mixtral = openCheckpoint(writeTinyCheckpoint(path.join(dir, 'mixtral-hooks'), { family: 'mixtral', experts: 8, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 23 }).dir, { warn: () => {} })
    for (const [method, params] of [
      ['frequency-pruning', { ratio: 0.5 }], ['neuron-top-k', { ratio: 0.5 }], ['novice-replacement', { ratio: 0.5 }],
      ['m-smoe', { ratio: 0.5 }], ['hc-smoe', { ratio: 0.5 }], ['naee', { ratio: 0.25 }], ['magnitude-pruning', { ratio: 0.5 }],
    ] as const) {
      const v = await prepareVariant(mixtral, await planVariant(mixtral, method, params), { calibration: { source: 'builtin', sequences: 4, length: 32, seed: 5 }, device: 'cpu', threads: 1 })
      const hash = contentHash(v.edits)
      const folder = path.join(dir, 'variants-hooks', `${'1'.repeat(16)}-${hash}`)
      publishVariantFolder(folder, mixtral.dir, v.edits, n => mixtral.tensors.get(n)!.dtype, () => {})
      const warnings: string[] = []
      assert.equal(variantFolderState(folder, m => warnings.push(m)), 'valid', `${method}: ${warnings.join('; ')}`)
      assert.equal(contentHash(readVariantFiles(folder).edits), hash, method)
    }
  })

  it('publishing removes staging folders of dead processes on this host, keeps live ones, and names the harness home when it cannot write', async () => {
    const parent = path.join(dir, 'variants-staging')
    fs.mkdirSync(parent, { recursive: true })
    const dead = path.join(parent, `abc.staged-${os.hostname()}-999999-0a1b2c`)
    const legacyDead = path.join(parent, 'abc.staged-999998-0a1b2c.tmp-999998')
    const live = path.join(parent, `abc.staged-${os.hostname()}-${process.pid}-0a1b2c`)
    const foreign = path.join(parent, 'abc.old-other-host-999999-0a1b2c')
    for (const d of [dead, legacyDead, live, foreign]) fs.mkdirSync(d)
    publishVariantFolder(path.join(parent, 'v'), modelDir, emptyEdits(), dtypeOf, () => {})
    assert.deepEqual(fs.readdirSync(parent).sort(), [path.basename(foreign), path.basename(live), 'v'].sort())

    const blocked = path.join(dir, 'a-file')
    fs.writeFileSync(blocked, '')
    assert.throws(() => publishVariantFolder(path.join(blocked, 'variants', 'v'), modelDir, emptyEdits(), dtypeOf, () => {}),
      (e: any) => e.code === 'FILE_ACCESS' && /MOE_HARNESS_HOME/.test(e.message))
  })

})
