// The scoring graph's expert chunks (moeGraph.ts: If bodies of EXPERTS_PER_BODY groups) compute the
// same numbers as the flat per-expert path, and keep the main graph small whatever the expert count.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fromBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema } from 'onnx-buf'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { packBatch } from '../../src/engine/packing.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph, type GraphOptions } from '../../src/onnx/moeGraph.ts'
import { createSession } from '../../src/ort/ort.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const E = 40 // three bodies: 16 + 16 + 8 groups

function model(name: string, dtype: 'F32' | 'BF16', layers = 2, experts = E) {
  const d = path.join(dir, name)
  writeTinyCheckpoint(d, { family: 'qwen3_moe', dtype, hidden: 32, heads: 4, kvHeads: 2, experts, topK: 6, ffn: 12, layers, vocab: 320, seed: 7 })
  return openCheckpoint(d, { warn: () => {} })
}

const requests = [
  { prefix: [1, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33], branches: [[5, 6, 7], [8]], scorePrefixFrom: 1 },
  { prefix: [9, 10, 11, 12, 13, 200], branches: [[14, 15]], scorePrefixFrom: 1 },
]

async function run(ckpt: ReturnType<typeof model>, edits: VariantEdits, options: GraphOptions, threads: number) {
  const graph = buildScoringGraph(ckpt, edits, options)
  const session = await createSession(graph, { device: 'cpu', threads })
  try {
    const out = await session.run(batchFeeds(packBatch(requests, [0, 1])))
    return out
  } finally {
    await session.release()
  }
}

const edited: VariantEdits = {
  layers: {
    0: { disabled: [3, 17, 33], bindings: { 5: 2, 21: 2, 39: 38 }, neuronKeep: 0.5 },
    1: { novices: { 7: new Float32Array(32).fill(0.25) }, topK: 4 },
  },
  overrides: {},
}

describe('scoring graph expert chunks', () => {
  for (const dtype of ['F32', 'BF16'] as const) {
    for (const [label, edits] of [['no edits', emptyEdits()], ['masks, bindings, neuron top-k, novices', edited]] as const) {
      for (const threads of [1, 2]) {
        it(`${dtype}, ${label}, ${threads} thread(s): logprobs and calibration outputs equal the flat per-expert path bit for bit`, async () => {
          const ckpt = model(`q-${dtype}-${label.length}-${threads}`, dtype)
          const calibration = { moeOutputs: true, routerLogits: true, expertOutputs: true, expertHidden: true, expertOutputsAllTokens: true }
          const chunked = await run(ckpt, edits, { calibration }, threads)
          const flat = await run(ckpt, edits, { calibration, flatExperts: true }, threads)
          assert.deepEqual(Object.keys(chunked).sort(), Object.keys(flat).sort())
          assert.ok(Object.keys(flat).length > 3 * 2 * (E - 3), 'per-expert outputs of both layers')
          for (const name of Object.keys(flat)) {
            assert.deepEqual(chunked[name]!.dims, flat[name]!.dims, name)
            assert.deepEqual(Array.from(chunked[name]!.data as Float32Array), Array.from(flat[name]!.data as Float32Array), name)
          }
          const lp = chunked.logprobs!.data as Float32Array
          assert.ok(lp.every(v => Number.isFinite(v) && v < 0), 'log-probabilities are finite and negative')
        })
      }
    }
  }

  it('a peeking slice reports the same per-expert outputs from bodies as from the flat path', async () => {
    const ckpt = model('peek', 'BF16')
    const graphOf = (flatExperts: boolean) => buildScoringGraph(ckpt, edited, { calibration: { expertOutputs: true, expertHidden: true, routerLogits: true }, slice: { from: 0, to: 3, peekMlp: true }, flatExperts })
    const outs = await Promise.all([false, true].map(async flatExperts => {
      const session = await createSession(graphOf(flatExperts), { device: 'cpu', threads: 2 })
      try {
        return await session.run(batchFeeds(packBatch(requests, [0, 1])))
      } finally {
        await session.release()
      }
    }))
    assert.ok(outs[0]!.expert_hidden_1_0 && outs[0]!.expert_out_1_39 && outs[0]!.hidden_out)
    assert.deepEqual(Object.keys(outs[0]!).sort(), Object.keys(outs[1]!).sort())
    for (const name of Object.keys(outs[1]!)) assert.deepEqual(Array.from(outs[0]![name]!.data as Float32Array), Array.from(outs[1]![name]!.data as Float32Array), name)
  })

  it('keeps the main graph small: expert nodes live in If bodies of at most 16 groups', () => {
    const counts = [16, 64].map(experts => {
      const proto = fromBinary(ModelProtoSchema, buildScoringGraph(model(`size-${experts}`, 'F32', 3, experts), emptyEdits()).model)
      // Expert bodies only (attention's one-pass/blocked If and the bias If are per layer / per graph).
      const ifs = proto.graph!.node.filter(n => n.opType === 'If' && n.attribute.some(a => a.g?.name.startsWith('moe_')))
      const bodyGemms = ifs.map(n => n.attribute.find(a => a.name === 'then_branch')!.g!.node.filter(x => x.opType === 'Gemm').length)
      return { main: proto.graph!.node.length, ifs: ifs.length, bodyGemms }
    })
    // 3 Gemms (gate, up, down) per expert; 16 experts per body.
    assert.deepEqual(counts[0]!.bodyGemms, [48, 48, 48])
    assert.equal(counts[1]!.ifs, 3 * 4)
    assert.ok(counts[1]!.bodyGemms.every(n => n === 48))
    // Four times the experts adds only the If nodes to the main graph (no per-expert Cast or Gather).
    assert.equal(counts[1]!.main - counts[0]!.main, 3 * 3)
  })
})
