// Weights mapped from the checkpoint files (moeGraph.ts WeightLoader with weightFiles) and the on-disk
// graph cache (graphStore.ts): the mapped session scores as the float32-resident one does, its
// initializers point into the safetensors files at the tensors' own offsets in their stored dtype,
// only computed tensors are written, and a second build of the same graph is read from the cache.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fromBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema, TensorProto_DataLocation, type GraphProto, type TensorProto } from 'onnx-buf'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { openGraphSession } from '../../src/engine/graphSession.ts'
import { createSession } from '../../src/ort/ort.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { releaseTemporary, storedScoringGraph } from '../../src/onnx/graphStore.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { overrideNumel } from '../../src/edits/overrideTensor.ts'
import { halvedLayer0 } from '../helpers/edits.ts'

const dir = tmpDir()

/** Initializers of a graph and of every body nested in it. */
function allInitializers(g: GraphProto): TensorProto[] {
  return [...g.initializer, ...g.node.flatMap(n => n.attribute.flatMap(a => (a.g ? allInitializers(a.g) : [])))]
}
const requests: ScoreRequest[] = [
  { prefix: [1, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33], branches: [[5, 6, 7], [8]], scorePrefixFrom: 1 },
  { prefix: [9, 10, 11, 12, 13, 200], branches: [[14, 15]], scorePrefixFrom: 1 },
]
const batch = packBatch(requests, [0, 1])

async function scores(ckpt: Checkpoint, edits: VariantEdits, weights: 'mapped' | 'memory', cacheDir: string): Promise<Float32Array> {
  const session = await openGraphSession(ckpt, edits, {}, { device: 'cpu', threads: 1, weights, cacheDir })
  try {
    return (await session.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array
  } finally {
    await session.release()
  }
}


const models: [string, () => Checkpoint][] = [
  ['Qwen3-MoE BF16', () => {
    const d = path.join(dir, 'qwen3-bf16')
    writeTinyCheckpoint(d, { family: 'qwen3_moe', dtype: 'BF16', hidden: 32, heads: 4, kvHeads: 2, experts: 8, topK: 2, ffn: 12, layers: 2, seed: 3 })
    return openCheckpoint(d, { warn: () => {} })
  }],
  ['Mixtral F16, sharded', () => {
    const d = path.join(dir, 'mixtral-f16')
    writeTinyCheckpoint(d, { family: 'mixtral', dtype: 'F16', layers: 2, seed: 4, shards: 3 })
    return openCheckpoint(d, { warn: () => {} })
  }],
  ['OLMoE F32', () => {
    const d = path.join(dir, 'olmoe-f32')
    writeTinyCheckpoint(d, { family: 'olmoe', dtype: 'F32', layers: 2, seed: 6 })
    return openCheckpoint(d, { warn: () => {} })
  }],
  ['DeepSeek-V3 FP8 (dequantized weights are written, BF16 ones mapped)', () => {
    const d = path.join(dir, 'dsv3-fp8')
    writeTinyDeepseek(d, { version: 'v3', dtype: 'F8_E4M3', experts: 8, topK: 2, nGroup: 4, topkGroup: 2, topkMethod: 'noaux_tc', layers: 2, firstKDenseReplace: 0, seed: 5 })
    return openCheckpoint(d, { warn: () => {} })
  }],
]

describe('weights mapped from the checkpoint files', () => {
  for (const [name, open] of models) {
    it(`${name}: scores as the float32-resident session, with and without overrides`, async () => {
      const ckpt = open()
      const cache = path.join(dir, `cache-${name.replace(/\W+/g, '_')}`)
      for (const edits of [emptyEdits(), halvedLayer0(ckpt)]) {
        const mapped = await scores(ckpt, edits, 'mapped', cache)
        const memory = await scores(ckpt, edits, 'memory', cache)
        assert.equal(mapped.length, memory.length)
        const worst = Math.max(...mapped.map((v, i) => Math.abs(v - memory[i]!)))
        // Widening 2-byte floats is exact; only the lm_head's GEMM form differs (transB vs a folded transpose).
        assert.ok(worst < 1e-5, `max |mapped - memory| = ${worst}`)
        assert.ok(mapped.every(Number.isFinite))
      }
      const base = await scores(ckpt, emptyEdits(), 'mapped', cache)
      const edited = await scores(ckpt, halvedLayer0(ckpt), 'mapped', cache)
      assert.ok(base.some((v, i) => Math.abs(v - edited[i]!) > 1e-4), 'the overrides change the scores')
    })
  }

  it('a second session of a cached graph opens onnxruntime\'s kept optimized form: same scores', async () => {
    const ckpt = models[0]![1]()
    const cacheDir = path.join(dir, 'cache-optimized')
    const open = async () => {
      const session = await openGraphSession(ckpt, halvedLayer0(ckpt), {}, { device: 'cpu', threads: 1, cacheDir })
      try {
        return { fromOptimized: session.fromOptimizedCache === true, logprobs: (await session.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array }
      } finally {
        await session.release()
      }
    }
    const first = await open()
    const second = await open()
    assert.equal(first.fromOptimized, false)
    assert.equal(second.fromOptimized, true)
    assert.deepEqual(second.logprobs, first.logprobs)
  })

  it('initializers point into the safetensors files at each tensor\'s offset, in its stored dtype; onnxruntime folds none into float32 and none is a session input', async () => {
    const ckpt = models[0]![1]()
    const graph = storedScoringGraph(ckpt, emptyEdits(), {}, path.join(dir, 'cache-layout'))
    const proto = fromBinary(ModelProtoSchema, graph.model)
    const inputs = new Set(proto.graph!.input.map(i => i.name))
    // A weight read in a layer or expert body is declared there, as `w:<tensor>@<body>` (moeGraph.ts WeightLoader).
    const weights = allInitializers(proto.graph!).filter(t => t.name.startsWith('w:'))
    const tensorOf = (initializer: string) => initializer.slice(2).split('@')[0]!
    assert.deepEqual(new Set(weights.map(t => tensorOf(t.name))), new Set(ckpt.tensors.keys()))
    for (const t of weights) {
      const entry = ckpt.tensors.get(tensorOf(t.name))!
      const ext = Object.fromEntries(t.externalData.map(kv => [kv.key, kv.value]))
      assert.equal(t.dataLocation, TensorProto_DataLocation.EXTERNAL)
      assert.equal('/' + ext.location, path.resolve(entry.file), t.name)
      assert.equal(Number(ext.offset), entry.offset)
      assert.equal(Number(ext.length), entry.byteLength)
      assert.equal(t.dataType, 16, `${t.name} stays bfloat16`)
      assert.ok(!inputs.has(t.name), `${t.name} is no graph input`)
    }
    assert.equal(fs.existsSync(path.join(graph.dir, 'derived.bin')), false, 'nothing computed, nothing written')
    const optimized = path.join(dir, 'optimized.onnx')
    process.env.MOE_HARNESS_ORT_OPTIMIZED_MODEL = optimized
    const session = await openGraphSession(ckpt, emptyEdits(), {}, { device: 'cpu', threads: 1, cacheDir: path.join(dir, 'cache-layout') })
    delete process.env.MOE_HARNESS_ORT_OPTIMIZED_MODEL
    try {
      assert.deepEqual([...session.inputNames].sort(), ['branch_ids', 'input_ids', 'position_ids', 'score_positions', 'score_targets'])
    } finally {
      await session.release()
    }
    // After onnxruntime's optimizations every weight is still the bfloat16 initializer: no float32 copy
    // was folded or pre-packed into the graph (a float32 initializer the size of a weight would be one).
    const after = fromBinary(ModelProtoSchema, fs.readFileSync(optimized))
    const inits = allInitializers(after.graph!)
    const numel = (t: { dims: bigint[] }) => t.dims.reduce((a, b) => a * Number(b), 1)
    const smallestWeight = Math.min(...[...ckpt.tensors.values()].filter(e => e.shape.length === 2).map(e => e.shape[0]! * e.shape[1]!))
    assert.deepEqual(inits.filter(t => t.dataType === 1 && numel(t) >= smallestWeight).map(t => t.name), [])
    assert.equal(inits.filter(t => t.name.startsWith('w:') && t.dataType === 16).length, weights.length)
  })

  it('without a writable cache the same graph is built and scored, writing nothing (computed tensors go in memory)', async () => {
    const ckpt = models[0]![1]()
    const edits = halvedLayer0(ckpt)
    const cached = await scores(ckpt, edits, 'mapped', path.join(dir, 'cache-compare'))
    const unstored = storedScoringGraph(ckpt, edits, {}, undefined)
    assert.equal(unstored.fromCache, false)
    assert.equal(unstored.temporary, true)
    assert.ok(fs.statSync(path.join(unstored.dir, 'derived.bin')).size >= Object.values(edits.overrides).reduce((n, o) => n + 2 * overrideNumel(o), 0))
    const readOnly = path.join(dir, 'read-only-home')
    fs.mkdirSync(readOnly)
    fs.chmodSync(readOnly, 0o555)
    try {
      // Root ignores permissions: only check the fallback where they apply.
      const viaReadOnly = process.getuid?.() === 0 ? undefined : storedScoringGraph(ckpt, edits, {}, readOnly)
      if (viaReadOnly) { assert.equal(viaReadOnly.temporary, true); releaseTemporary(viaReadOnly) }
      const fed = await scores(ckpt, edits, 'mapped', path.join(dir, 'cache-compare'))
      assert.deepEqual(fed, cached)
      const session = await createSession(unstored, { device: 'cpu', threads: 1 })
      releaseTemporary(unstored)
      assert.equal(fs.existsSync(unstored.dir), false, 'the temp folder goes once the session exists')
      try {
        const out = (await session.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array
        assert.deepEqual(out, cached)
      } finally {
        await session.release()
      }
      assert.deepEqual(fs.readdirSync(readOnly), [])
    } finally {
      fs.chmodSync(readOnly, 0o755)
    }
  })

  it('the graph cache: a second build is read back, other edits get their own entry with only their tensors written, a damaged entry is rebuilt', () => {
    const ckpt = models[0]![1]()
    const root = path.join(dir, 'cache-reuse')
    const first = storedScoringGraph(ckpt, emptyEdits(), {}, root)
    const again = storedScoringGraph(ckpt, emptyEdits(), {}, root)
    assert.equal(first.fromCache, false)
    assert.equal(again.fromCache, true)
    assert.equal(again.dir, first.dir)
    assert.ok(Buffer.from(again.model).equals(Buffer.from(first.model)))
    assert.deepEqual(again.outputNames, first.outputNames)

    const edits = halvedLayer0(ckpt)
    const variant = storedScoringGraph(ckpt, edits, {}, root)
    assert.notEqual(variant.dir, first.dir)
    const overrideBytes = Object.values(edits.overrides).reduce((s, o) => s + overrideNumel(o) * 2, 0) // BF16
    const derived = fs.statSync(path.join(variant.dir, 'derived.bin')).size
    assert.ok(derived >= overrideBytes && derived < overrideBytes + 64 * Object.keys(edits.overrides).length, `derived.bin ${derived} bytes for ${overrideBytes} edited`)

    assert.equal(storedScoringGraph(ckpt, edits, {}, root).fromCache, true)
    // derived.bin rewritten at the same size (its values wrong): the entry no longer matches its manifest.
    fs.writeFileSync(path.join(variant.dir, 'derived.bin'), Buffer.alloc(derived))
    const redone = storedScoringGraph(ckpt, edits, {}, root)
    assert.equal(redone.fromCache, false, 'a rewritten derived.bin is rebuilt, not trusted')
    assert.ok(fs.readFileSync(path.join(redone.dir, 'derived.bin')).some(b => b !== 0))

    const withMasks = storedScoringGraph(ckpt, emptyEdits(), { maskInputs: true }, root)
    assert.notEqual(withMasks.dir, first.dir, 'graph options are part of the key')

    fs.truncateSync(path.join(first.dir, 'graph.onnx'), 1000)
    assert.equal(storedScoringGraph(ckpt, emptyEdits(), {}, root).fromCache, false, 'a truncated graph.onnx is rebuilt')

    fs.writeFileSync(path.join(first.dir, 'manifest.json'), '{ not json')
    const rebuilt = storedScoringGraph(ckpt, emptyEdits(), {}, root)
    assert.equal(rebuilt.fromCache, false)
    assert.ok(Buffer.from(rebuilt.model).equals(Buffer.from(first.model)))
    assert.deepEqual(fs.readdirSync(path.join(root, 'graphs')).filter(n => n.startsWith('.building-')), [], 'no temp folder left behind')
    // An in-place rewrite whose mtime is put back (touch -r, cp -p) still changes the key: ctime moves.
    const file = [...ckpt.tensors.values()][0]!.file
    const st = fs.statSync(file)
    fs.writeFileSync(file, fs.readFileSync(file))
    fs.utimesSync(file, st.atime, st.mtime)
    assert.notEqual(storedScoringGraph(ckpt, emptyEdits(), {}, root).dir, first.dir)
  })
})
