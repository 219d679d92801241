// createSession's optimized-graph cache (ort.ts GraphBytes.optimizedCacheDir): the first session writes
// onnxruntime's optimized graph beside the cached graph, later sessions open it with optimizations off,
// and both score bit-identically to a session without the cache; a damaged file is replaced.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph } from '../../src/onnx/moeGraph.ts'
import { storedScoringGraph } from '../../src/onnx/graphStore.ts'
import { createSession, type GraphBytes } from '../../src/ort/ort.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { halvedLayer0 } from '../helpers/edits.ts'

const dir = tmpDir()
const requests: ScoreRequest[] = [
  { prefix: [1, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33], branches: [[5, 6, 7], [8]], scorePrefixFrom: 1 },
  { prefix: [9, 10, 11, 12, 13, 200], branches: [[14, 15]], scorePrefixFrom: 1 },
]
const batch = packBatch(requests, [0, 1])

async function open(graph: GraphBytes): Promise<{ logprobs: Float32Array; fromOptimizedCache: boolean | undefined }> {
  const session = await createSession(graph, { device: 'cpu', threads: 1 })
  try {
    return { logprobs: (await session.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array, fromOptimizedCache: session.fromOptimizedCache }
  } finally {
    await session.release()
  }
}


const optimizedFiles = (d: string) => fs.readdirSync(d).filter(f => f.startsWith('optimized-'))

const models: [string, () => Checkpoint][] = [
  ['Qwen3-MoE BF16', () => {
    const d = path.join(dir, 'qwen3-bf16')
    writeTinyCheckpoint(d, { family: 'qwen3_moe', dtype: 'BF16', hidden: 32, heads: 4, kvHeads: 2, experts: 8, topK: 2, ffn: 12, layers: 2, seed: 3 })
    return openCheckpoint(d, { warn: () => {} })
  }],
  ['OLMoE F32', () => {
    const d = path.join(dir, 'olmoe-f32')
    writeTinyCheckpoint(d, { family: 'olmoe', dtype: 'F32', layers: 2, seed: 6 })
    return openCheckpoint(d, { warn: () => {} })
  }],
]

describe('createSession keeps onnxruntime\'s optimized graph', () => {
  for (const [name, make] of models) {
    it(`${name}: the kept graph opens with optimizations off and scores bit-identically`, async () => {
      const ckpt = make()
      const graph = storedScoringGraph(ckpt, emptyEdits(), {}, path.join(dir, `home-${name.replace(/\W+/g, '-')}`))
      const plain = await open(graph)
      assert.equal(plain.fromOptimizedCache, false)
      assert.deepEqual(optimizedFiles(graph.dir), [], 'nothing is kept without optimizedCacheDir')

      const cached = { ...graph, optimizedCacheDir: graph.dir }
      const first = await open(cached)
      assert.equal(first.fromOptimizedCache, false)
      const kept = optimizedFiles(graph.dir)
      assert.equal(kept.length, 1, `one optimized graph in ${graph.dir}: ${kept.join(', ')}`)
      const file = path.join(graph.dir, kept[0]!)
      // It references the checkpoint's files like the graph does: no weight copied in.
      assert.ok(fs.statSync(file).size < 4 * graph.model.byteLength + 65536, `optimized graph ${fs.statSync(file).size} bytes vs graph ${graph.model.byteLength}`)

      const second = await open(cached)
      assert.equal(second.fromOptimizedCache, true)
      assert.deepEqual(first.logprobs, plain.logprobs)
      assert.deepEqual(second.logprobs, plain.logprobs)

      fs.writeFileSync(file, 'not an onnx model')
      const repaired = await open(cached)
      assert.equal(repaired.fromOptimizedCache, false)
      assert.deepEqual(repaired.logprobs, plain.logprobs)
      assert.notEqual(fs.readFileSync(file, 'utf8').slice(0, 17), 'not an onnx model', 'the damaged file was replaced')
      assert.equal((await open(cached)).fromOptimizedCache, true)
      assert.deepEqual(fs.readdirSync(graph.dir).filter(f => f.endsWith('.tmp')), [], 'no temp file left')

      // The optimized form belongs to the graph's bytes: a copy of them opens it, another graph in the same
      // folder (a rebuilt entry) never does.
      assert.equal((await open({ ...cached, model: Uint8Array.from(graph.model) })).fromOptimizedCache, true)
      const variant = storedScoringGraph(ckpt, halvedLayer0(ckpt), {}, path.join(dir, `home-${name.replace(/\W+/g, '-')}`))
      const own = await open(variant)
      const moved = await open({ ...variant, optimizedCacheDir: graph.dir })
      assert.equal(moved.fromOptimizedCache, false)
      assert.deepEqual(moved.logprobs, own.logprobs)
      assert.notDeepEqual(moved.logprobs, plain.logprobs)
      assert.equal(optimizedFiles(graph.dir).length, 2)
    })
  }

  it('keeps an empty file, and opens as usual, where onnxruntime folds weights into its optimized graph', async () => {
    // A float32 checkpoint: onnxruntime folds Transpose(lm_head) into a float32 tensor, so the optimized graph
    // would carry a copy of that weight.
    const d = path.join(dir, 'olmoe-f32-wide')
    writeTinyCheckpoint(d, { family: 'olmoe', dtype: 'F32', layers: 1, seed: 7, hidden: 256, ffn: 64 })
    const graph = storedScoringGraph(openCheckpoint(d, { warn: () => {} }), emptyEdits(), {}, path.join(dir, 'home-f32-wide'))
    const cached = { ...graph, optimizedCacheDir: graph.dir }
    const first = await open(cached)
    const kept = optimizedFiles(graph.dir)
    assert.equal(kept.length, 1)
    assert.equal(fs.statSync(path.join(graph.dir, kept[0]!)).size, 0)
    const second = await open(cached)
    assert.equal(second.fromOptimizedCache, false)
    assert.deepEqual(second.logprobs, first.logprobs)
    assert.equal(fs.statSync(path.join(graph.dir, kept[0]!)).size, 0)
  })

  it('keeps nothing for a graph with in-memory weights', async () => {
    const d = path.join(dir, 'qwen3-bf16')
    const ckpt = openCheckpoint(d, { warn: () => {} })
    const keep = fs.mkdtempSync(path.join(dir, 'keep-'))
    const graph = buildScoringGraph(ckpt, emptyEdits())
    assert.ok(graph.external.size > 0)
    const r = await open({ ...graph, optimizedCacheDir: keep })
    assert.equal(r.fromOptimizedCache, false)
    assert.deepEqual(fs.readdirSync(keep), [])
  })
})
