// Half-precision graphs with layer bodies (GraphOptions.layerBodies): chosen for WebGPU sessions only
// (bit-identical there: bench/gpu.bench.ts part (c) on Dawn over lavapipe, mapped and in-memory weights,
// with and without edits), never for the CPU, whose float16 fallback rounds a value crossing an If.
// On the CPU the option still builds a valid graph of few main-graph nodes that scores close to float32.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fromBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema } from 'onnx-buf'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { sessionGraphOptions } from '../../src/engine/graphSession.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { packBatch } from '../../src/engine/packing.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph } from '../../src/onnx/moeGraph.ts'
import { createSession } from '../../src/ort/ort.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('half-precision layer bodies', () => {
  it('are chosen for half precision on WebGPU only, and a caller\'s choice stands', () => {
    assert.deepEqual(sessionGraphOptions({}, 'float16', 'webgpu'), { precision: 'float16', layerBodies: true })
    assert.deepEqual(sessionGraphOptions({}, 'float16', 'cpu'), { precision: 'float16' })
    assert.deepEqual(sessionGraphOptions({}, 'float16', 'cuda'), { precision: 'float16' })
    assert.deepEqual(sessionGraphOptions({ precision: 'float16' }, 'float32', 'webgpu'), {}, 'float32 keeps its old cache key')
    assert.deepEqual(sessionGraphOptions({ layerBodies: false }, 'float16', 'webgpu'), { layerBodies: false, precision: 'float16' })
  })

  it('build a graph of constant main-graph size that scores like the one-graph layout within float16 rounding (CPU)', async () => {
    const dir = tmpDir()
    const nodes: number[] = []
    let outs: Float32Array[] = []
    for (const layers of [2, 6]) {
      writeTinyCheckpoint(path.join(dir, `q${layers}`), { family: 'qwen3_moe', dtype: 'BF16', hidden: 32, heads: 4, kvHeads: 2, experts: 8, topK: 2, ffn: 12, layers, vocab: 320, seed: 21 })
      const ckpt = openCheckpoint(path.join(dir, `q${layers}`), { warn: () => {} })
      outs = []
      for (const layerBodies of [false, true]) {
        const graph = buildScoringGraph(ckpt, emptyEdits(), { precision: 'float16', layerBodies })
        if (layerBodies) nodes.push(fromBinary(ModelProtoSchema, graph.model).graph!.node.length)
        const session = await createSession(graph, { device: 'cpu', threads: 1 })
        const out = await session.run(batchFeeds(packBatch([{ prefix: Array.from({ length: 40 }, (_, i) => (i * 13 + 5) % 320), branches: [], scorePrefixFrom: 1 }], [0])), ['logprobs'])
        outs.push(Float32Array.from(out.logprobs.data as Float32Array))
      }
    }
    assert.equal(nodes[0], nodes[1] - 4 * 1, `main-graph nodes grow by one If per layer: ${nodes}`)
    const [flat, bodies] = outs as [Float32Array, Float32Array]
    const max = flat.reduce((m, v, i) => Math.max(m, Math.abs(v - bodies[i]!)), 0)
    assert.ok(flat.every(Number.isFinite) && bodies.every(Number.isFinite))
    assert.ok(max < 2e-2, `|Δlogp| ${max}`)
  })
})
