// The half-precision scoring graph (GraphOptions.precision, src/onnx/precision.ts; issue 10 §6): it
// computes in float16 with float32 exactly where transformers keeps it, agrees with the float32 graph
// within float16 rounding, and refuses non-finite outputs from float16 overflow with NUMERIC_FAILURE.
//
// onnxruntime's CPU provider is the only one here: it runs a float16 node it has no kernel for in
// float32 between inserted Casts, and its RemoveDuplicateCastTransformer then drops the float32 ->
// float16 -> float32 round trips between such nodes (insert_cast_transformer.cc treats float and
// float16 as one type group). So on the CPU a float16 graph is rounded to float16 only where a node runs
// on float16 itself (Gather, Reshape, Transpose, Concat, Split, ...), and the numbers below understate
// what a GPU computes; which nodes are float32 islands is checked on the graph itself (typesOf).
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fromBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema, type GraphProto } from 'onnx-buf'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { defaultPrecision, openGraphSession, resolvePrecision } from '../../src/engine/graphSession.ts'
import { packBatch, type ScoreRequest } from '../../src/engine/packing.ts'
import { batchFeeds } from '../../src/engine/scorer.ts'
import { HarnessError } from '../../src/errors.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { buildScoringGraph, type GraphOptions } from '../../src/onnx/moeGraph.ts'
import { createSession } from '../../src/ort/ort.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const requests: ScoreRequest[] = [
  { prefix: [1, 17, 250, 3, 99, 45, 301, 12, 12, 7, 180, 64, 2, 33], branches: [[5, 6, 7], [8]], scorePrefixFrom: 1 },
  { prefix: [9, 10, 11, 12, 13, 200], branches: [[14, 15]], scorePrefixFrom: 1 },
]
const batch = packBatch(requests, [0, 1])

const open = (name: string, write: (d: string) => void): Checkpoint => {
  const d = path.join(dir, name)
  write(d)
  return openCheckpoint(d, { warn: () => {} })
}
const families: [string, () => Checkpoint][] = [
  ['Qwen3-MoE BF16 (head q/k norm)', () => open('qwen3', d => writeTinyCheckpoint(d, { family: 'qwen3_moe', dtype: 'BF16', experts: 8, topK: 2, ffn: 12, layers: 2, seed: 3 }))],
  ['Mixtral F16', () => open('mixtral', d => writeTinyCheckpoint(d, { family: 'mixtral', dtype: 'F16', layers: 2, seed: 4 }))],
  ['OLMoE BF16 (full q/k norm, clip_qkv)', () => open('olmoe', d => writeTinyCheckpoint(d, { family: 'olmoe', dtype: 'BF16', layers: 2, seed: 6, clipQkv: 2 }))],
  ['Qwen2-MoE BF16 (gated shared expert)', () => open('qwen2', d => writeTinyCheckpoint(d, { family: 'qwen2_moe', dtype: 'BF16', layers: 2, seed: 7, sharedFfn: 16 }))],
  ['DeepSeek-V2 BF16 (MLA, float32 rotary)', () => open('dsv2', d => writeTinyDeepseek(d, { version: 'v2', dtype: 'BF16', seed: 8 }))],
  ['DeepSeek-V3 BF16 (sigmoid router in float32)', () => open('dsv3', d => writeTinyDeepseek(d, { version: 'v3', dtype: 'BF16', seed: 9 }))],
]

async function logprobs(ckpt: Checkpoint, options: GraphOptions, edits: VariantEdits = emptyEdits()): Promise<Float32Array> {
  const session = await createSession(buildScoringGraph(ckpt, edits, options), { device: 'cpu', threads: 1 })
  try {
    return (await session.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array
  } finally {
    await session.release()
  }
}

/**
 * The element type of every value of a built model (graph inputs, initializers, node outputs, If
 * bodies), from the ONNX type rules of the ops the graph uses; asserts that the float inputs of every
 * arithmetic node share one type, as onnxruntime's type inference would.
 */
function typesOf(model: Uint8Array): { types: Map<string, number>; nodes: { op: string; inputs: string[] }[] } {
  const types = new Map<string, number>()
  const nodes: { op: string; inputs: string[] }[] = []
  const BOOL = 9, INT64 = 7
  const boolOps = new Set(['Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'And', 'Or', 'Not', 'IsInf', 'IsNaN'])
  const sameFloat = new Set(['Add', 'Sub', 'Mul', 'Div', 'MatMul', 'Gemm', 'Clip', 'Concat', 'Max', 'Min'])
  const walk = (g: GraphProto) => {
    for (const i of g.input) types.set(i.name, i.type!.value.case === 'tensorType' ? i.type!.value.value.elemType : -1)
    for (const t of g.initializer) types.set(t.name, t.dataType)
    for (const n of g.node) {
      nodes.push({ op: n.opType, inputs: n.input })
      const t0 = types.get(n.input[0]!)
      if (sameFloat.has(n.opType)) {
        const floats = n.input.filter(Boolean).map(i => types.get(i)).filter(t => t === 1 || t === 10 || t === 16)
        assert.ok(new Set(floats).size <= 1, `${n.opType} ${n.name} mixes element types ${floats}`)
      }
      let out: number[]
      if (n.opType === 'Cast') out = [Number(n.attribute.find(a => a.name === 'to')!.i)]
      else if (n.opType === 'If') {
        for (const a of n.attribute) walk(a.g!)
        out = n.attribute.find(a => a.name === 'then_branch')!.g!.output.map(o => (o.type!.value.case === 'tensorType' ? o.type!.value.value.elemType : -1))
      } else if (boolOps.has(n.opType)) out = [BOOL]
      else if (['Shape', 'Size', 'NonZero'].includes(n.opType)) out = [INT64]
      else if (n.opType === 'ConstantOfShape') out = [1]
      else if (n.opType === 'TopK') out = [t0!, INT64]
      else if (n.opType === 'Where') out = [types.get(n.input[1]!)!]
      else out = n.output.map(() => t0!)
      n.output.forEach((o, i) => types.set(o, out[i] ?? out[0]!))
    }
  }
  walk(fromBinary(ModelProtoSchema, model).graph!)
  return { types, nodes }
}

const FLOAT = 1, FLOAT16 = 10

describe('half-precision scoring graph', () => {
  const built = families.map(([name, make]) => [name, make()] as const)

  // Measured max |Δlogp| (float16 on the CPU provider vs float32) over these six models and 25 scored
  // tokens each: 6.2e-4 .. 1.4e-3. One float16 rounding is 2^-11 = 4.9e-4 relative; the log-probabilities
  // of these models' logits (|z| up to ~5) move by a few roundings. 5e-3 leaves 3.5x margin and is ~10
  // roundings: a graph that rounded to bfloat16 (2^-8) or lost a float32 island where the CPU rounds
  // would exceed it.
  const BOUND = 5e-3
  for (const [name, ckpt] of built) {
    it(`${name}: float16 log-probabilities within ${BOUND} of float32`, async () => {
      const f32 = await logprobs(ckpt, {})
      const f16 = await logprobs(ckpt, { precision: 'float16' })
      assert.equal(f16.length, f32.length)
      let worst = 0
      f16.forEach((v, i) => {
        assert.ok(Number.isFinite(v), `token ${i}: ${v}`)
        worst = Math.max(worst, Math.abs(v - f32[i]!))
      })
      assert.ok(worst <= BOUND, `max |Δlogp| ${worst} > ${BOUND}`)
      assert.ok(worst > 0, 'the float16 graph computed exactly the float32 numbers: it does not compute in float16')
    })
  }

  it('computes in float16 and keeps float32 for norms, rotary tables, router, attention softmax, expert sum and log-softmax', () => {
    for (const [name, ckpt] of built) {
      const spec = ckpt.spec
      const moeLayers = spec.layers.filter(l => l.kind === 'moe').length
      const { types, nodes } = typesOf(buildScoringGraph(ckpt, emptyEdits(), { precision: 'float16' }).model)
      const inputType = (op: string, i = 0) => nodes.filter(n => n.op === op).map(n => types.get(n.inputs[i]!))
      const count = (xs: (number | undefined)[], t: number) => xs.filter(x => x === t).length
      // Projections, experts and attention matmuls in float16; only DeepSeek's router Linear (one per
      // MoE layer) is float32, as DeepseekV2Moe / DeepseekV3TopkRouter compute it.
      const gemm = inputType('Gemm'), matmul = inputType('MatMul')
      const deepseek = spec.family === 'deepseek_v2' || spec.family === 'deepseek_v3'
      assert.equal(count(gemm, FLOAT), deepseek ? moeLayers : 0, `${name}: float32 Gemms`)
      assert.ok(count(gemm, FLOAT16) > 0 && count(matmul, FLOAT16) === matmul.length, `${name}: MatMul/Gemm in float16`)
      // float32 islands.
      const softmax = inputType('Softmax')
      assert.equal(softmax.length, spec.layers.length + moeLayers - (spec.family === 'deepseek_v3' ? moeLayers : 0), `${name}: one attention softmax per layer + one router softmax per MoE layer (V3: sigmoid)`)
      assert.equal(count(softmax, FLOAT), softmax.length, `${name}: every Softmax in float32`)
      assert.deepEqual(inputType('Sigmoid').filter(t => t === FLOAT).length, spec.family === 'deepseek_v3' ? moeLayers : 0, `${name}: router sigmoid in float32, activations in float16`)
      assert.deepEqual(inputType('LogSoftmax'), [FLOAT], `${name}: log-softmax in float32`)
      const norms = inputType('ReduceMean')
      assert.ok(norms.length >= 2 * spec.layers.length + 1 && count(norms, FLOAT) === norms.length, `${name}: every RMSNorm variance in float32`)
      assert.ok(inputType('Cos').every(t => t === FLOAT) && inputType('Sin').every(t => t === FLOAT), `${name}: rotary tables computed in float32`)
      const scatter = inputType('ScatterND')
      assert.ok(scatter.length > 0 && count(scatter, FLOAT) === scatter.length, `${name}: expert outputs summed in float32`)
    }
  })

  it('float32 is the default and builds exactly the graph built before precision existed', () => {
    for (const [name, ckpt] of built) {
      const plain = buildScoringGraph(ckpt, emptyEdits(), {}).model
      assert.deepEqual(buildScoringGraph(ckpt, emptyEdits(), { precision: 'float32' }).model, plain, name)
      const { types } = typesOf(plain)
      assert.ok(![...types.values()].includes(FLOAT16), `${name}: a float32 graph holds no float16 value`)
    }
    assert.equal(defaultPrecision('cpu'), 'float32')
    assert.equal(defaultPrecision('cuda'), 'float16')
    assert.equal(defaultPrecision('webgpu'), 'float16')
  })

  it('calibration outputs, slices, mask inputs and hooks build and run in float16 with float32 inputs and outputs', async () => {
    const [, ckpt] = built[0]!
    const edits = emptyEdits()
    edits.layers[0] = { neuronKeep: 0.5, skipSecondBeta: 0.3 }
    edits.layers[1] = { bindings: { 1: 0 }, novices: { 3: new Float32Array(ckpt.spec.hiddenSize).fill(0.01) } }
    const calibration = { routerLogits: true, moeInputs: true, moeOutputs: true, expertOutputs: true, expertHidden: true, expertOutputsAllTokens: true }
    for (const options of [{ calibration }, { calibration, flatExperts: true }, { denseExperts: true }, { maskInputs: true }, { slice: { from: 1, to: 3 } }] as GraphOptions[]) {
      const graph = buildScoringGraph(ckpt, options.maskInputs ? emptyEdits() : edits, { ...options, precision: 'float16' })
      const session = await createSession(graph, { device: 'cpu', threads: 1 })
      try {
        for (const input of session.inputs) assert.ok(input.type === 'int64' || input.type === 'float32', `${input.name}: ${input.type}`)
        const feeds: Parameters<typeof session.run>[0] = { ...batchFeeds(batch) }
        const N = batch.rows * batch.width
        for (const input of session.inputs) {
          if (input.name.startsWith('expert_mask_')) feeds[input.name] = { type: 'float32', data: new Float32Array(Number(input.shape[0])), dims: [Number(input.shape[0])] }
          if (input.name === 'hidden_in') feeds[input.name] = { type: 'float32', data: new Float32Array(N * ckpt.spec.hiddenSize).map((_, i) => Math.sin(i)), dims: [N, ckpt.spec.hiddenSize] }
        }
        const out = await session.run(feeds, session.outputNames)
        for (const name of session.outputNames) {
          const t = out[name]!
          if (t.data instanceof Float32Array) assert.ok(t.data.every(Number.isFinite), `${JSON.stringify(Object.keys(options))} ${name} finite`)
        }
        assert.ok(session.outputNames.length > 0)
      } finally {
        await session.release()
      }
    }
  })

  it('a float16 overflow is NUMERIC_FAILURE naming the fix; the same model scores in float32', async () => {
    // The final norm's weight set to 1e5: finite in the checkpoint's bfloat16 and in float32, +Inf in
    // float16 (above 65504), so every logit overflows.
    const [, ckpt] = built[0]!
    const edits = emptyEdits()
    edits.overrides[ckpt.names.finalNorm] = new Float32Array(ckpt.spec.hiddenSize).fill(1e5)
    const settings = { device: 'cpu' as const, threads: 1, weights: 'memory' as const }
    const half = await openGraphSession(ckpt, edits, {}, { ...settings, precision: 'float16' })
    try {
      assert.equal(half.precision, 'float16')
      await assert.rejects(half.run(batchFeeds(batch), ['logprobs']), (e: unknown) => {
        assert.ok(e instanceof HarnessError && e.code === 'NUMERIC_FAILURE', String(e))
        assert.match(e.message, /float16 graph returned \d+ non-finite values in 'logprobs'.*65504.*--precision float32/)
        return true
      })
    } finally {
      await half.release()
    }
    const full = await openGraphSession(ckpt, edits, {}, settings)
    try {
      assert.equal(full.precision, 'float32')
      assert.ok(((await full.run(batchFeeds(batch), ['logprobs'])).logprobs.data as Float32Array).every(Number.isFinite))
    } finally {
      await full.release()
    }
  })

  it('precision enters the graph cache key; bfloat16 is refused where the provider has no kernels', async () => {
    const [, ckpt] = built[1]!
    const cacheDir = path.join(dir, 'home')
    const opened = async (precision: 'float32' | 'float16') => {
      const s = await openGraphSession(ckpt, emptyEdits(), {}, { device: 'cpu', threads: 1, cacheDir, precision })
      await s.release()
      return s.graphFromCache
    }
    assert.equal(await opened('float32'), false)
    assert.equal(await opened('float16'), false, 'float16 is another graph')
    assert.equal(await opened('float16'), true)
    assert.equal(await opened('float32'), true)
    for (const device of ['cpu', 'webgpu'] as const) {
      assert.throws(() => resolvePrecision(device, 'bfloat16'), (e: unknown) => e instanceof HarnessError && e.code === 'INVALID_ARGUMENT' && /needs --device cuda/.test(e.message))
    }
    assert.equal(resolvePrecision('cuda', 'bfloat16'), 'bfloat16')
  })
})
