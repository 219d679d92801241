// Blocks of rows (sequenceChunks.ts, moeGraph.ts overQueries / overRows) pad the last block to a
// whole block, and every padded row is computed. Blocks as large as the limit allows padded
// T = 4100 query rows (H = 4, 2^26 scores) to 2 x 4092 (2x the attention work, +0.8 GB peak RSS
// measured on a tiny-width DeepSeek-V2 config), and M = 1548 scored positions of a 50,304-token
// vocabulary to 2 x 1334 (the head, most of a mid-width model's work: 1.55x the batch's time).
// Blocks of equal size below the limit cover the rows with fewer than one padded row per pass.
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema, TypeProtoSchema, ValueInfoProtoSchema, type GraphProto } from 'onnx-buf'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph } from '../../src/onnx/moeGraph.ts'
import { attentionBlock, attentionRows, attentionScores, headBlock, headRows, type ChunkLimits } from '../../src/onnx/sequenceChunks.ts'
import { createSession } from '../../src/ort/ort.ts'
import { mulberry32 } from '../../src/util/rng.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const ceilDiv = (a: number, b: number) => Math.ceil(a / b)

describe('blocks of rows: equal blocks, less than one padded row per pass', () => {
  it('attentionRows and headRows: within the limit, at least two rows, padding < passes', () => {
    const limits: ChunkLimits = { attention: 2 ** 26, head: 2 ** 26 }
    assert.equal(attentionRows(1, 4, 4100), 2050) // was 4092: a second pass of 4092 rows for 8 real ones
    assert.equal(attentionBlock(1, 4, 4100), 4092) // the most rows a pass may hold (what memoryFit counts)
    assert.equal(headRows(1548, 50304), 774) // was 1334: 2 x 1334 head rows for 1548 positions
    assert.equal(headBlock(50304), 1334)
    for (const [B, H] of [[1, 4], [2, 32], [3, 16]] as const) {
      for (let T = 1; T < 6000; T += 37) {
        const rows = attentionRows(B, H, T, limits), cap = attentionBlock(B, H, T, limits)
        const passes = ceilDiv(T, rows)
        assert.ok(rows <= cap && rows <= T, `rows ${rows} within the block ${cap} and T ${T}`)
        assert.ok(T < 2 || rows >= 2, `T ${T}: ${rows} rows`)
        assert.equal(passes, ceilDiv(T, cap), `T ${T}: as many passes as blocks of the largest size need`)
        assert.ok(passes * rows - T < passes, `T ${T}: ${passes} x ${rows} rows`)
        assert.ok(attentionScores(B, H, T, limits) >= B * H * cap * T, `T ${T}: memoryFit's count covers a pass`)
      }
    }
    for (const V of [320, 50304, 151936]) {
      for (let M = 1; M < 3000; M += 29) {
        const rows = headRows(M, V, limits)
        const passes = ceilDiv(M, rows)
        assert.ok(rows <= headBlock(V, limits) && rows <= M && (M < 2 || rows >= 2))
        assert.ok(passes * rows - M < passes, `M ${M}, V ${V}: ${passes} x ${rows} rows`)
      }
    }
  })

  it('the graph blocks as sequenceChunks says, and scores as one pass', async () => {
    const dir = tmpDir()
    const ckpt = openCheckpoint(writeTinyCheckpoint(path.join(dir, 'm'), { family: 'qwen3_moe', hidden: 32, heads: 4, kvHeads: 2, experts: 4, topK: 2, ffn: 16, layers: 1, vocab: 320, seed: 3 }).dir, { warn: () => {} })
    const rng = mulberry32(4)
    const tokens = (n: number) => Array.from({ length: n }, () => 1 + Math.floor(rng() * 300))
    const requests: ScoreRequest[] = [{ prefix: tokens(42), branches: [], scorePrefixFrom: 1 }, { prefix: tokens(20), branches: [], scorePrefixFrom: 3 }]
    const batch = packBatch(requests, [0, 1])
    const B = 2, T = 41, M = 41 + 17, H = ckpt.spec.numHeads, V = ckpt.spec.vocabSize
    // Largest blocks of 40 query rows and 50 scored positions: 2 passes each.
    const limits: ChunkLimits = { attention: 40 * B * H * T, head: 50 * V }
    const built = buildScoringGraph(ckpt, emptyEdits(), { chunkLimits: limits })
    // Expose the trip counts and rows per pass of the attention Loop and the head Loop.
    const model = fromBinary(ModelProtoSchema, built.model)
    const graph = model.graph!
    const loopOf = (nodes: GraphProto['node'], body: string) => nodes.find(n => n.opType === 'Loop' && n.attribute[0]?.g?.name.startsWith(body))
    const attentionIf = graph.node.find(n => n.opType === 'If' && n.attribute.some(a => a.g?.name.startsWith('attention_blocked')))!
    const attentionLoop = loopOf(attentionIf.attribute.find(a => a.g?.name.startsWith('attention_blocked'))!.g!.node, 'attention_block')!
    const headLoop = loopOf(graph.node, 'row_block')!
    const rowsOf = (loop: typeof headLoop) => {
      const body = loop.attribute[0]!.g!
      return body.node.find(n => n.opType === 'Mul' && n.input[0] === body.input[0]!.name)!.input[1]!
    }
    const probes = { attentionPasses: attentionLoop.input[0]!, attentionRows: rowsOf(attentionLoop), headPasses: headLoop.input[0]!, headRows: rowsOf(headLoop) }
    for (const name of Object.values(probes)) {
      graph.output.push(create(ValueInfoProtoSchema, { name, type: create(TypeProtoSchema, { value: { case: 'tensorType', value: { elemType: 7, shape: { dim: [] } } } }) }))
    }
    const run = async (graphBytes: typeof built, names: string[]) => {
      const session = await createSession(graphBytes, { device: 'cpu', threads: 1 })
      try {
        return await session.run(batchFeeds(batch), names)
      } finally {
        await session.release()
      }
    }
    const out = await run({ ...built, model: toBinary(ModelProtoSchema, model) }, ['logprobs', ...Object.values(probes)])
    const value = (k: keyof typeof probes) => Number(out[probes[k]]!.data[0])
    assert.equal(batch.scorePositions.length, M)
    assert.deepEqual(
      { attentionPasses: value('attentionPasses'), attentionRows: value('attentionRows'), headPasses: value('headPasses'), headRows: value('headRows') },
      { attentionPasses: 2, attentionRows: attentionRows(B, H, T, limits), headPasses: 2, headRows: headRows(M, V, limits) },
    )
    assert.equal(attentionRows(B, H, T, limits), 21)
    assert.equal(headRows(M, V, limits), 29)
    const onePass = await run(buildScoringGraph(ckpt, emptyEdits()), ['logprobs'])
    assert.deepEqual(Array.from(out.logprobs!.data as Float32Array), Array.from(onePass.logprobs!.data as Float32Array))
  })
})
