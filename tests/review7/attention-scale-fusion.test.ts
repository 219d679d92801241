// ac4edfa put attention in an If (one pass, or a Loop over blocks of query rows) but kept the query
// scaling, Mul(q, 1/sqrt(hd)), in the graph outside it. onnxruntime folds a scalar Mul into the MatMul
// it feeds (FusedMatMul alpha: alpha·(q·k) instead of (alpha·q)·k, other roundings) only within one
// graph, so every float32 score moved: up to 1.9e-6 in logprobs on an OLMoE-shaped model at width 512
// against ac4edfa~1 (measured with both sessions in one process; 0 once the Mul is in the body).
// The scaling must sit in the same body as the QK MatMul, one pass and blocked alike.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fromBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema, type GraphProto } from 'onnx-buf'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph } from '../../src/onnx/moeGraph.ts'
import { writeTinyCheckpoint, type TinyFamily } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()

function bodies(g: GraphProto): GraphProto[] {
  return g.node.flatMap(n => n.attribute.flatMap(a => (a.g ? [a.g, ...bodies(a.g)] : [])))
}

describe('attention: the query scaling and the QK MatMul in one graph', () => {
  for (const family of ['olmoe', 'qwen3_moe', 'mixtral'] as TinyFamily[]) {
    it(`${family}: in the one-pass branch and in the block body`, () => {
      const ckpt = openCheckpoint(writeTinyCheckpoint(path.join(dir, family), { family, hidden: 32, heads: 4, kvHeads: 2, experts: 4, topK: 2, ffn: 16, layers: 2, vocab: 320, seed: 2 }).dir, { warn: () => {} })
      const graph = fromBinary(ModelProtoSchema, buildScoringGraph(ckpt, emptyEdits()).model).graph!
      const attention = bodies(graph).filter(b => /^attention_(direct|block)_/.test(b.name))
      assert.equal(attention.length, 2 * ckpt.spec.layers.length)
      for (const body of attention) {
        const qk = body.node.find(n => n.opType === 'MatMul')!
        const producer = body.node.find(n => n.output.includes(qk.input[0]!))
        assert.equal(producer?.opType, 'Mul', `${body.name}: the QK MatMul's queries are scaled in the same graph`)
      }
    })
  }
})
