// Decoder layers in If bodies (moeGraph.ts buildScoringGraph `layerBodies`): every output is bit-identical
// to the one-graph layout, and the main graph holds one node per layer, whatever the depth.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fromBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema, type GraphProto } from 'onnx-buf'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { packBatch } from '../../src/engine/packing.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph, expertMaskFeeds, type GraphOptions, type WeightFiles } from '../../src/onnx/moeGraph.ts'
import { createSession, type Feed } from '../../src/ort/ort.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const requests = [
  { prefix: [1, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33], branches: [[5, 6, 7], [8]], scorePrefixFrom: 1 },
  { prefix: [9, 10, 11, 12, 13, 200], branches: [[14, 15]], scorePrefixFrom: 1 },
]

function qwen(name: string, dtype: 'F32' | 'BF16', layers = 3): Checkpoint {
  const d = path.join(dir, name)
  if (!fs.existsSync(d)) writeTinyCheckpoint(d, { family: 'qwen3_moe', dtype, hidden: 32, heads: 4, kvHeads: 2, experts: 20, topK: 4, ffn: 12, layers, vocab: 320, seed: 11 })
  return openCheckpoint(d, { warn: () => {} })
}

/** Mapped weights as the engine builds them (graphStore.ts), computed tensors appended to a file of the test's. */
function weightFiles(name: string): WeightFiles {
  const file = path.join(dir, `${name}.derived.bin`)
  fs.writeFileSync(file, new Uint8Array(0))
  return {
    base: '/',
    appendDerived(bytes) {
      const offset = fs.statSync(file).size
      fs.appendFileSync(file, bytes)
      return { location: path.relative('/', file), offset }
    },
  }
}

type Outputs = Record<string, { data: ArrayLike<number | bigint | boolean>; dims: readonly number[] }>

async function run(ckpt: Checkpoint, edits: VariantEdits, options: Omit<GraphOptions, 'weightFiles'>, layerBodies: boolean, tag: string): Promise<Outputs> {
  const built = buildScoringGraph(ckpt, edits, { ...options, weightFiles: weightFiles(tag) }, layerBodies)
  const session = await createSession({ ...built, external: new Map(), externalFolder: '/' }, { device: 'cpu', threads: 2 })
  const feeds: Record<string, Feed> = batchFeeds(packBatch(requests, [0, 1]))
  const N = feeds.input_ids!.data.length
  if (options.slice && options.slice.from > 0) {
    feeds.hidden_in = { type: 'float32', data: Float32Array.from({ length: N * ckpt.spec.hiddenSize }, (_, i) => Math.sin(i) * 0.5), dims: [N, ckpt.spec.hiddenSize] }
  }
  if (options.maskInputs) {
    for (const [name, mask] of Object.entries(expertMaskFeeds(ckpt.spec, { layers: { 1: { disabled: [2, 7] } }, overrides: {} }))) feeds[name] = { type: 'float32', data: mask, dims: [mask.length] }
  }
  try {
    return await session.run(feeds)
  } finally {
    await session.release()
  }
}

function assertIdentical(bodies: Outputs, flat: Outputs): void {
  assert.deepEqual(Object.keys(bodies).sort(), Object.keys(flat).sort())
  for (const name of Object.keys(flat)) {
    assert.deepEqual(bodies[name]!.dims, flat[name]!.dims, name)
    const bytes = (o: Outputs[string]) => Buffer.from((o.data as unknown as ArrayBufferView).buffer, (o.data as unknown as ArrayBufferView).byteOffset, (o.data as unknown as ArrayBufferView).byteLength)
    assert.ok(bytes(bodies[name]!).equals(bytes(flat[name]!)), `${name} differs bit for bit`)
  }
}

const edited: VariantEdits = {
  layers: {
    0: { disabled: [3, 17], bindings: { 5: 2, 19: 2 }, neuronKeep: 0.5 },
    1: { novices: { 7: new Float32Array(32).fill(0.25) }, topK: 3 },
    2: { topK: 2, skipSecondBeta: 0.4 },
  },
  overrides: {},
}
const calibration = { routerLogits: true, moeInputs: true, moeOutputs: true, expertOutputs: true, expertHidden: true, expertOutputsAllTokens: true }

describe('decoder layers in If bodies', () => {
  for (const dtype of ['F32', 'BF16'] as const) {
    it(`${dtype}: logprobs, greedy and every calibration output equal the one-graph layout bit for bit (edits, all calibration outputs)`, async () => {
      const ckpt = qwen(`q-${dtype}`, dtype)
      const bodies = await run(ckpt, edited, { calibration }, true, `${dtype}-b`)
      const flat = await run(ckpt, edited, { calibration }, false, `${dtype}-f`)
      assert.ok(Object.keys(flat).length > 3 * 20 * 2, 'per-expert outputs of every layer')
      assertIdentical(bodies, flat)
      assert.ok((bodies.logprobs!.data as Float32Array).every(v => Number.isFinite(v) && v < 0))
    })
  }

  it('slices (hidden_in, a peeked MLP, hidden_out) and expert mask inputs give the same numbers in bodies', async () => {
    const ckpt = qwen('q-BF16', 'BF16')
    const peek = { calibration: { routerLogits: true, expertOutputs: true, moeInputs: true }, slice: { from: 1, to: 5, peekMlp: true } }
    const [pb, pf] = [await run(ckpt, emptyEdits(), peek, true, 'peek-b'), await run(ckpt, emptyEdits(), peek, false, 'peek-f')]
    assert.ok(pb.hidden_out && pb.router_logits_2 && pb.expert_out_2_0 && !pb.router_logits_1, 'the peeked layer reports, the others do not')
    assertIdentical(pb, pf)
    const middle = { slice: { from: 2, to: 4 } }
    assertIdentical(await run(ckpt, emptyEdits(), middle, true, 'mid-b'), await run(ckpt, emptyEdits(), middle, false, 'mid-f'))
    const masked = { maskInputs: true }
    assertIdentical(await run(ckpt, emptyEdits(), masked, true, 'mask-b'), await run(ckpt, emptyEdits(), masked, false, 'mask-f'))
  })

  it('DeepSeek-V3 (dense first layer, shared experts, MLA, grouped sigmoid router) is bit-identical too', async () => {
    const d = path.join(dir, 'deepseek')
    writeTinyDeepseek(d, { version: 'v3', dtype: 'BF16', seed: 5 })
    const ckpt = openCheckpoint(d, { warn: () => {} })
    assertIdentical(await run(ckpt, emptyEdits(), { calibration }, true, 'ds-b'), await run(ckpt, emptyEdits(), { calibration }, false, 'ds-f'))
  })

  it('the main graph holds one If per layer and no layer weights, whatever the depth; bodies are the default for float32 mapped graphs only', () => {
    const shape = (layers: number, options: Omit<GraphOptions, 'weightFiles'> = {}, mapped = true) => {
      const ckpt = qwen(`depth-${layers}`, 'BF16', layers)
      const graph = fromBinary(ModelProtoSchema, buildScoringGraph(ckpt, emptyEdits(), { ...options, ...(mapped ? { weightFiles: weightFiles(`depth-${layers}`) } : {}) }).model).graph!
      const layerIfs = graph.node.filter(n => n.opType === 'If' && thenBranch(n).name.startsWith('layer_'))
      return { nodes: graph.node.length, initializers: graph.initializer.length, layerIfs: layerIfs.length, bodyNodes: layerIfs.map(n => countNodes(thenBranch(n))) }
    }
    const [two, six] = [shape(2), shape(6)]
    assert.equal(two.layerIfs, 2)
    assert.equal(six.layerIfs, 6)
    assert.equal(six.nodes - two.nodes, 4, 'four more layers add four If nodes to the main graph')
    assert.equal(six.initializers, two.initializers, 'layer weights live in the bodies that read them')
    assert.ok(six.bodyNodes.every(n => n === six.bodyNodes[0]) && six.bodyNodes[0]! > 100, 'each layer body holds its whole layer')
    // In-memory weights and half precision keep the one-graph layout (their numbers would change in bodies).
    assert.equal(shape(2, {}, false).layerIfs, 0)
    assert.equal(shape(2, { precision: 'float16' }).layerIfs, 0)
  })
})

function thenBranch(n: { attribute: { name: string; g?: GraphProto }[] }): GraphProto {
  return n.attribute.find(a => a.name === 'then_branch')!.g!
}

function countNodes(g: GraphProto): number {
  return g.node.reduce((s, n) => s + 1 + n.attribute.reduce((t, a) => t + (a.g ? countNodes(a.g) : 0), 0), 0)
}
