// Builds the scoring graph of a MoE checkpoint (+ variant edits) with exact HF semantics.
//
// Inputs (B rows of T packed tokens, right-padded):
//   input_ids, position_ids  int64 [B, T]
//   branch_ids               int64 [B, T]   0 = shared prefix, k > 0 = continuation branch k, -1 = padding.
//                                           A token attends to earlier tokens of branch 0 and of its own
//                                           branch, so several continuations share one scored context.
//   score_positions          int64 [M]      flat indices b*T + t whose next token is scored
//   score_targets            int64 [M]      the token expected after each scored position
//   expert_mask_L            float32 [E]    only with options.maskInputs: per MoE layer, 0 = kept, -inf = removed
// Outputs:
//   logprobs  float32 [M]   log p(target | prefix), log-softmax over the full config vocab
//   greedy    bool    [M]   target == argmax (first maximum), lm-eval's is_greedy
// Optional calibration outputs per MoE layer L: router_logits_L [N, E] (raw), router_scores_L [N, E]
// (softmax over surviving experts, or DeepSeek-V3's sigmoid), topk_indices_L / topk_weights_L [N, k]
// (the routing and final gate weights the graph used, routed_scaling_factor included), moe_input_L [N, d],
// moe_output_L [N, d], expert_rows_L_e [n] + expert_out_L_e [n, d] (pre-gate, routed tokens only),
// expert_out_all_L_e [N, d] (the expert forced on every token).
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { ModelSpec, MoeLayerSpec } from '../model/modelSpec.ts'
import { decodeToFloat32 } from '../model/safetensors.ts'
import type { ExpertNames } from '../model/tensorNames.ts'
import { mergeEdits, neuronsKept, validateEdits, type LayerHooks, type VariantEdits } from '../edits/variantEdits.ts'
import { isStoredOverride, overrideBytes, overrideNumel, type OverrideTensor } from '../edits/overrideTensor.ts'
import { GraphBuilder, type ElemType } from './graphBuilder.ts'
import { Precision, type ComputePrecision } from './precision.ts'
import { CHUNK_LIMITS, headBlock, type ChunkLimits } from './sequenceChunks.ts'

export interface CalibrationOutputs {
  routerLogits?: boolean
  moeInputs?: boolean
  moeOutputs?: boolean
  /** Per-expert outputs on the tokens routed to it (with their flat row indices). */
  expertOutputs?: boolean
  /** Per-expert outputs with the expert forced on every token (HC-SMoE). */
  expertOutputsAllTokens?: boolean
  /** Per-expert input of the down projection, act(W_gate x) ⊙ W_up x, on routed tokens (Wanda). */
  expertHidden?: boolean
  /**
   * Build only what the requested outputs need: the block's output is unused (a peeking slice), so
   * the down projections (unless expertOutputs), the scatter, novices and shared experts are skipped.
   */
  outputsOnly?: boolean
}

export interface GraphOptions {
  calibration?: CalibrationOutputs
  /**
   * Compute every expert on every token and weight by the (mostly zero) gate: the dense baseline the
   * benchmark compares the sparse dispatch with. Same numbers, far more work.
   */
  denseExperts?: boolean
  /**
   * Expert masks as inputs, so variants that only remove experts share one session (issue 10 §4):
   * each MoE layer L takes `expert_mask_L` float32 [E] (0 = kept, -inf = removed, see
   * expertMaskFeeds), added to the router exactly where a `disabled` hook's constant mask is. The
   * edits (and the checkpoint's own) must then have no `disabled` hooks.
   */
  maskInputs?: boolean
  /**
   * All expert nodes in the main graph, as before the If bodies: the reference the bodies are tested
   * against (same numbers); session creation is then superlinear in layers x experts.
   */
  flatExperts?: boolean
  /** Build only part of the decoder (sequential calibration, src/calibration/sequential.ts). */
  slice?: GraphSlice
  /** Map weights from their files instead of copying them in as float32 (WeightLoader; graphStore.ts gives this). */
  weightFiles?: WeightFiles
  /**
   * The dtype the graph computes in (precision.ts): 'float32' (default; the CPU's) or half precision as
   * transformers runs these models on GPUs, with float32 kept where it keeps it (norms, router, softmax,
   * log-softmax). Inputs and outputs stay float32 either way.
   */
  precision?: ComputePrecision
  /**
   * Checkpoint tensors that enter as float32 graph inputs `weight_input:<name>` (their own shape)
   * instead of initializers, so variants that edit the same small set of tensors share one session and
   * differ only in their feeds (weightInputFeeds; chosen by sharedWeightInputs). Exact: the feeds are
   * the float32 values the initializer path's Cast produces. The edits' overrides of these tensors are
   * ignored by the graph; the feeds carry them.
   */
  weightInputs?: readonly string[]
  /**
   * Each decoder layer in an If body of its own (see buildScoringGraph). Absent: the default, float32
   * graphs of mapped weights only. graphSession.ts sets it for half-precision graphs on WebGPU, where it
   * was measured bit-identical to one main graph (bench/gpu.bench.ts part (c) on Dawn over lavapipe:
   * 2 to 48 layers of the Qwen3-30B-A3B shape) and creates sessions faster at depth.
   */
  layerBodies?: boolean
  /**
   * Run token-wise nodes on every position of the [B, T] batch, padding included (before issue 10;
   * see Padding). Only tests and benchmarks set it: the scores are the same within float rounding.
   */
  keepPadding?: boolean
  /**
   * When attention and the head work on blocks of rows (sequenceChunks.ts; default CHUNK_LIMITS).
   * Tests set small limits to compare blocked and one-pass results on tiny models.
   */
  chunkLimits?: ChunkLimits
}

/**
 * A part of the decoder, in residual-stream positions: 2·i is the residual entering layer i's
 * attention, 2·i + 1 the residual entering its MLP, 2·numLayers the final residual.
 * - from > 0: the graph takes `hidden_in` float32 [N, d] (the residual at `from`) instead of
 *   embedding input_ids; input_ids, position_ids and branch_ids stay inputs (shapes, rotary
 *   positions, masking).
 * - to < 2·numLayers: the graph returns `hidden_out` float32 [N, d] (the residual at `to`) and no
 *   logprobs / greedy.
 * - peekMlp (with `to` odd, = 2·L + 1): layer L's MLP is also built, for its calibration outputs only;
 *   its output is not added to the residual, and no other layer reports calibration outputs.
 */
export interface GraphSlice {
  from: number
  to: number
  peekMlp?: boolean
}

export interface BuiltGraph {
  model: Uint8Array
  /** External-data blobs by key; pass them to the session as in-memory external data. */
  external: Map<string, Uint8Array>
  outputNames: string[]
}

const NEG_INF = -Infinity

/**
 * `layerBodies`: each decoder layer in the then_branch of an If of its own, so the main graph holds O(1)
 * nodes per layer (the expert bodies, EXPERTS_PER_BODY, nest inside; weights are declared in the body
 * that reads them, see WeightLoader.initializer). onnxruntime plans the memory of each graph apart, and
 * planning one graph grows faster than its dynamically shaped values: with every layer's nodes in the
 * main graph, creation took 4.5 / 10.0 / 23.4 CPU s at 12 / 24 / 48 layers (Qwen3-30B-A3B shape at
 * hidden 64, 128 experts; with layer bodies see tests/engine/layer-bodies.test.ts and bench (a)).
 * The default for float32 graphs of mapped weights (weightFiles: what the engine runs). The others keep
 * every layer in the main graph, where bodies would change their numbers: in-memory weights are constants
 * that onnxruntime pre-packs only one body level deep (an expert body inside a layer body would compute
 * with unpacked weights, other float32 roundings), and on the CPU a half-precision value crossing an If
 * is rounded to float16 where one graph keeps its chain of float16 nodes in float32. Same nodes in the
 * same order: the numbers are bit-identical either way (tests/engine/layer-bodies.test.ts).
 */
export function buildScoringGraph(
  ckpt: Checkpoint, variantEdits: VariantEdits, options: GraphOptions = {}, layerBodies = options.layerBodies ?? (options.weightFiles !== undefined && (options.precision ?? 'float32') === 'float32'),
): BuiltGraph {
  const spec = ckpt.spec
  // A harness-format variant folder carries hooks of its own; edits apply on top of them.
  const edits = ckpt.baseEdits ? mergeEdits(ckpt.baseEdits, variantEdits) : variantEdits
  const calib = options.calibration ?? {}
  validateEdits(spec, edits)
  const g = new GraphBuilder('moe_scoring')
  const p = new Precision(options.precision)
  const weights = new ComputeWeights(new WeightLoader(g, ckpt, edits, options.weightFiles, p.compute, new Set(options.weightInputs ?? [])), p)
  const outputNames: string[] = []
  const addOutput = (name: string, type: ElemType, dims: (string | number)[]) => {
    g.output(name, type, dims)
    outputNames.push(name)
  }

  const total = spec.layers.length * 2
  const slice = options.slice ?? { from: 0, to: total }
  if (!(Number.isInteger(slice.from) && Number.isInteger(slice.to) && slice.from >= 0 && slice.to <= total && (slice.from < slice.to || (slice.peekMlp && slice.from === slice.to)))) {
    throw new Error(`graph slice [${slice.from}, ${slice.to}) is not a part of 0..${total}`)
  }
  if (slice.peekMlp && slice.to % 2 !== 1) throw new Error(`graph slice: peekMlp needs 'to' just before a layer's MLP (an odd position), got ${slice.to}`)
  const ids = g.input('input_ids', 'int64', ['B', 'T'])
  const pos = g.input('position_ids', 'int64', ['B', 'T'])
  const branch = g.input('branch_ids', 'int64', ['B', 'T'])
  const scorePos = g.input('score_positions', 'int64', ['M'])
  const scoreTgt = g.input('score_targets', 'int64', ['M'])

  const d = spec.hiddenSize
  const bt = g.op('Shape', [ids])
  const flat = (x: string, tail: number[]) => g.op('Reshape', [x, g.constInt([-1, ...tail])])
  // Validity and attention bias [B, 1, 1, T, T] (0 where allowed, -inf elsewhere), shared by all layers.
  const branchFlat = flat(branch, [])
  let valid = g.op('GreaterOrEqual', [branchFlat, g.scalarInt(0)])
  // A whole scoring graph computes token-wise nodes on the batch's real tokens only: N counts them, not
  // B x T (see Padding). Slices and calibration outputs keep every position: their consumers index rows as b*T + t.
  const padding = slice.from === 0 && slice.to === total && !Object.values(calib).some(Boolean) && !options.keepPadding ? dropPadding(g, valid) : undefined
  const tokenwise = (x: string) => (padding ? g.op('Gather', [flat(x, []), padding.real], { axis: 0 }) : x)
  if (padding) valid = tokenwise(valid)
  let x = slice.from === 0 ? weights.rows(ckpt.names.embed, tokenwise(flat(ids, [])), g) : p.toCompute(g, g.input('hidden_in', 'float32', ['N', d]))
  const runsAttention = spec.layers.some((_, i) => 2 * i >= slice.from && 2 * i < slice.to)
  const limits = options.chunkLimits ?? CHUNK_LIMITS
  // Half-precision graphs are for GPUs, and stay one pass: control flow there costs device round trips
  // no GPU run has measured yet, and the CPU's float16 emulation rounds wherever a value enters a body.
  const blocks = !p.isHalf
  const plan = runsAttention ? attentionPlan(g, branch, bt, spec.numHeads, limits, blocks) : undefined
  const [cos, sin] = runsAttention ? rotaryTables(g, spec, tokenwise(pos), p) : ['', '']

  const attends = (i: number) => 2 * i >= slice.from && 2 * i < slice.to
  const addsMlp = (i: number) => 2 * i + 1 >= slice.from && 2 * i + 1 < slice.to
  const peeks = (i: number) => (slice.peekMlp ?? false) && 2 * i + 1 === slice.to
  // Layer i's attention and MLP (each when the slice has it), in `b`: the main graph or a layer body.
  const attentionOf = (b: GraphBuilder, i: number, x: string): string => {
    const h = rmsNorm(b, weights.precision, x, weights.float(ckpt.names.layers[i].inputNorm, b), spec.rmsNormEps)
    return b.op('Add', [x, attention(b, spec, weights, i, h, bt, cos, sin, plan!, padding)])
  }
  const mlpOf = (b: GraphBuilder, report: Report, i: number, x: string): string => {
    const layer = spec.layers[i]!
    const n = ckpt.names.layers[i]
    const h2 = rmsNorm(b, weights.precision, x, weights.float(n.postNorm, b), spec.rmsNormEps)
    // A peeking slice reports the calibration outputs of the peeked layer only.
    const layerCalib = slice.peekMlp ? (addsMlp(i) ? {} : { ...calib, outputsOnly: true }) : calib
    let mlp: string
    if (layer.kind === 'dense') {
      mlp = swiglu(b, weights, n.denseMlp!, h2)
    } else {
      const hooks = edits.layers[layer.index] ?? {}
      if (options.maskInputs && hooks.disabled?.length) throw new Error(`graph with mask inputs: layer ${layer.index} has disabled experts in its edits; feed them as expert_mask_${layer.index} instead`)
      const maskInput = options.maskInputs ? g.input(`expert_mask_${layer.index}`, 'float32', [layer.numExperts]) : undefined
      mlp = moeBlock(b, spec, weights, layer, h2, valid, hooks, layerCalib, report, options.denseExperts ?? false, maskInput, options.flatExperts ?? false)
      if (layerCalib.moeInputs) b.op('Identity', [p.toFloat32(b, h2)], {}, report(`moe_input_${layer.index}`, 'float32', ['N', d]))
      if (layerCalib.moeOutputs) b.op('Identity', [p.toFloat32(b, mlp)], {}, report(`moe_output_${layer.index}`, 'float32', ['N', d]))
    }
    return addsMlp(i) ? b.op('Add', [x, mlp]) : x
  }
  const rootReport: Report = (name, type, dims) => {
    addOutput(name, type, dims)
    return name
  }
  // An If whose condition is always true, computed from an input so onnxruntime cannot fold it and inline the body.
  const always = layerBodies ? g.op('GreaterOrEqual', [g.op('Size', [ids]), g.scalarInt(0)]) : ''
  spec.layers.forEach((_, i) => {
    if (!attends(i) && !addsMlp(i) && !peeks(i)) return
    const layer = (b: GraphBuilder, report: Report, x: string) => {
      const y = attends(i) ? attentionOf(b, i, x) : x
      return addsMlp(i) || peeks(i) ? mlpOf(b, report, i, y) : y
    }
    if (!layerBodies) {
      x = layer(g, rootReport, x)
      return
    }
    // The body returns the new residual (unless only peeked) and the layer's calibration outputs.
    const body = g.subgraph(`layer_${i}`)
    const reported: BodyOutput[] = []
    const y = layer(body, (name, type, dims) => {
      const value = g.fresh(name)
      reported.push({ name, value, type, dims })
      return value
    }, x)
    const residual = y === x ? [] : [{ name: g.fresh('residual'), value: y, type: p.elemType, dims: ['N', d] }]
    ifBody(g, always, body, [...residual, ...reported], residual.length ? [x] : [])
    if (residual.length) x = residual[0]!.name
    for (const r of reported) addOutput(r.name, r.type, r.dims)
  })

  if (slice.to < total) {
    g.op('Identity', [p.toFloat32(g, x)], {}, 'hidden_out')
    addOutput('hidden_out', 'float32', ['N', d])
    return { model: g.toBytes({ architecture: spec.architecture }), external: g.external, outputNames }
  }
  const final = rmsNorm(g, weights.precision, x, weights.float(ckpt.names.finalNorm, g), spec.rmsNormEps)
  // Head and log-softmax over blocks of scored positions (sequenceChunks.ts headRows), in a Loop even
  // when one block holds them all: a long window's [M, V] logits would not fit, and rows are independent.
  const rowsOf = padding ? g.op('Gather', [padding.index, scorePos], { axis: 0 }) : scorePos
  // MatMul against the transposed head (folded once at session creation) beats Gemm(transB) for a
  // float32 head; a half-precision one is not constant (see WeightLoader), so Gemm reads it as stored.
  const halfHead = weights.isHalf(ckpt.names.lmHead) || p.isHalf
  const head = halfHead ? weights.float(ckpt.names.lmHead, g) : g.op('Transpose', [weights.float(ckpt.names.lmHead, g)], { perm: [1, 0] })
  overRows(g, [rowsOf, scoreTgt], blocks ? headBlock(spec.vocabSize, limits) : undefined, (b, [rows, targets]) => {
    const picked = b.op('Gather', [final, rows!], { axis: 0 })
    const logits = halfHead ? linear(b, picked, head) : b.op('MatMul', [picked, head])
    // LogSoftmax is onnxruntime's vectorised path (ReduceLogSumExp + ArgMax cost 8x more here).
    // In a half-precision graph the logits are widened first: log-softmax in float32 (precision.ts).
    const logSoftmax = b.op('LogSoftmax', [p.toFloat32(b, logits)], { axis: 1 })
    const lp = b.op('Reshape', [b.op('GatherElements', [logSoftmax, b.op('Unsqueeze', [targets!, g.constInt([1])])], { axis: 1 }), g.constInt([-1])])
    // is_greedy: the target is torch's argmax, the FIRST maximal index (lm-eval HFLM._loglikelihood_tokens:
    // logits.argmax(dim=-1) == cont_toks), so an exact tie at the top counts only for the earliest token.
    // TopK k=1 returns the lower index on ties (ONNX TopK spec) and costs less than ArgMax in onnxruntime.
    const [, top] = b.opN('TopK', [logSoftmax, g.constInt([1])], 2, { axis: 1, largest: 1, sorted: 1 })
    return [{ value: lp, type: 'float32' }, { value: b.op('Equal', [b.op('Reshape', [top, g.constInt([-1])]), targets!]), type: 'bool' }]
  }, ['logprobs', 'greedy'])
  addOutput('logprobs', 'float32', ['M'])
  addOutput('greedy', 'bool', ['M'])

  return { model: g.toBytes({ architecture: spec.architecture }), external: g.external, outputNames }
}

/**
 * The `expert_mask_L` inputs of a graph built with `maskInputs`: float32 [E] per MoE layer, -inf at
 * the edits' disabled experts and 0 elsewhere (the constant a `disabled` hook puts in the graph).
 */
export function expertMaskFeeds(spec: ModelSpec, edits: VariantEdits): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {}
  for (const layer of spec.layers) {
    if (layer.kind !== 'moe') continue
    const mask = new Float32Array(layer.numExperts)
    for (const e of edits.layers[layer.index]?.disabled ?? []) mask[e] = NEG_INF
    out[`expert_mask_${layer.index}`] = mask
  }
  return out
}

/** Whether a variant differs from its base only by removed experts (it can share a maskInputs session). */
export function isMaskOnly(edits: VariantEdits): boolean {
  return Object.keys(edits.overrides).length === 0 && Object.values(edits.layers).every(h => Object.entries(h).every(([k, v]) => k === 'disabled' || v === undefined))
}

/** The graph input that carries checkpoint tensor `name` in a graph built with GraphOptions.weightInputs. */
export function weightInputName(name: string): string {
  return `weight_input:${name}`
}

/**
 * Edited weights are fed as inputs up to this many bytes as float32: the worker holds the current
 * variant's feeds beside the mapped checkpoint, outside the pool's per-worker estimate (memoryFit.ts), so
 * the bound stays small. Larger edits build a session of their own, mapping the edited tensors from the
 * variant folder: at real width that session costs ~0.1 of the first (README, bench (a)). The number of
 * inputs costs nothing at session creation (Qwen3 tiny, every expert matrix an input: 12 / 24 / 48 layers,
 * 4,608 / 9,216 / 18,432 inputs, 3.5 / 9.0 / 21.7 CPU s vs 4.7 / 10.3 / 23.3 as initializers).
 */
const WEIGHT_INPUTS_MAX_BYTES = 128 * 2 ** 20

/**
 * The tensors a variant's graph can take as inputs so that it shares one session with every variant
 * that edits the same tensors (GraphOptions.weightInputs), or undefined when it cannot: only variants
 * that change weights and nothing else (magnitude pruning and Wanda at any ratio), of a checkpoint
 * without hooks of its own, within WEIGHT_INPUTS_MAX_BYTES, on a float32 graph, of tensors stored in
 * half precision (BF16 / F16: the checkpoints these models ship as) and none FP8 (dequantized by the harness). Sorted, so the same set names the same session.
 */
export function sharedWeightInputs(ckpt: Checkpoint, edits: VariantEdits, precision: ComputePrecision): string[] | undefined {
  const names = Object.keys(edits.overrides).sort()
  if (!names.length || ckpt.baseEdits || precision !== 'float32') return undefined
  if (!Object.values(edits.layers).every(h => Object.values(h).every(v => v === undefined))) return undefined
  let bytes = 0
  for (const name of names) {
    const entry = ckpt.tensors.get(name)
    // A float32 weight's own graph uses it as a constant onnxruntime may pre-pack, whose products can
    // round differently from an input's; half-precision ones are widened at run time in both graphs.
    if (!entry || entry.fp8 || entry.dtype === 'F32') return undefined
    bytes += 4 * entry.shape.reduce((x, y) => x * y, 1)
  }
  return bytes <= WEIGHT_INPUTS_MAX_BYTES ? names : undefined
}

/** VARIANT_INVALID unless `override` has as many values as the checkpoint tensor `name` of `shape`. */
function checkOverrideSize(name: string, shape: number[], override: OverrideTensor): void {
  const numel = shape.reduce((x, y) => x * y, 1)
  if (overrideNumel(override) !== numel) {
    fail('VARIANT_INVALID', `The variant replaces '${name}' with ${overrideNumel(override)} values but the checkpoint tensor has shape [${shape}] (${numel}); the variant was prepared for another model: prepare it again for this one.`)
  }
}

/**
 * The feeds of a graph built with GraphOptions.weightInputs = `names`: each tensor's values as the
 * variant has them (its override, rounded to the checkpoint's dtype as a stored variant is, else the
 * checkpoint's own), as float32 [shape]. Errors: VARIANT_INVALID when an override has the wrong size.
 */
export function weightInputFeeds(ckpt: Checkpoint, edits: VariantEdits, names: readonly string[]): Record<string, { data: Float32Array; dims: number[] }> {
  const out: Record<string, { data: Float32Array; dims: number[] }> = {}
  for (const name of names) {
    const entry = ckpt.tensors.get(name)!
    const override = edits.overrides[name]
    if (override) checkOverrideSize(name, entry.shape, override)
    const bytes = override ? overrideBytes(override, entry.dtype) : ckpt.readRaw(name) // readRaw refuses NaN/Inf
    out[weightInputName(name)] = { data: decodeToFloat32(bytes, entry.dtype), dims: entry.shape }
  }
  return out
}

/**
 * The weights as the graph computes with them (GraphOptions.precision): `float` in the compute dtype,
 * `float32` for float32 islands (DeepSeek's router). WeightLoader hands every weight over as float32, so
 * a half-precision graph narrows it again (exact for float16 / bfloat16 checkpoint weights of their own
 * dtype; bfloat16 weights in a float16 graph are rounded, see precision.ts).
 */
class ComputeWeights {
  constructor(private loader: WeightLoader, readonly precision: Precision) {}

  get ckpt(): Checkpoint {
    return this.loader.ckpt
  }

  /** `name` in the compute dtype, usable in `scope`. */
  float(name: string, scope: GraphBuilder): string {
    return this.loader.float(name, scope)
  }

  float32(name: string, scope: GraphBuilder): string {
    return this.loader.float32(name, scope)
  }

  rows(name: string, indices: string, scope: GraphBuilder): string {
    return this.loader.rows(name, indices, scope)
  }

  isHalf(name: string): boolean {
    return this.loader.isHalf(name)
  }
}

/**
 * Where the weights of a graph built with `GraphOptions.weightFiles` live (graphStore.ts provides it).
 * Checkpoint tensors stay in the checkpoint's own safetensors files, read by onnxruntime through
 * memory mapping; tensors the harness computes (variant overrides, dequantized FP8) are appended to
 * one file of the graph's own.
 */
export interface WeightFiles {
  /** The folder every external-data location is relative to (the session resolves them against it). */
  base: string
  /**
   * Stores a tensor the harness computed; returns its external-data location (relative to `base`,
   * or a key of the graph's in-memory external data) and byte offset there.
   */
  appendDerived(bytes: Uint8Array): { location: string; offset: number }
}

const ELEM_OF_DTYPE = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as const
const ONNX_TYPE_OF: Record<ComputePrecision, number> = { float32: 1, float16: 10, bfloat16: 16 }

/**
 * Hands the graph its weights as float32 values, in one of two ways:
 * - mapped (GraphOptions.weightFiles; what the engine uses): every tensor is an external initializer
 *   in the dtype it is stored in, read by onnxruntime from the checkpoint file itself (overrides and
 *   FP8 weights from the derived file). Half-precision ones are widened by Cast(Reshape(w, shape known
 *   only at run time)) in the scope that uses them (an expert's If body): the zero-copy Reshape keeps
 *   onnxruntime from folding the Cast into a float32 copy at session creation or pre-packing it (see
 *   float()). Feeding every weight as an input instead would need float32 feeds (onnxruntime-node
 *   has no bfloat16 tensors): twice the checkpoint. So a process holds the checkpoint's bytes once, mapped and shared by its workers, plus one
 *   float32 weight at a time. The 2-byte -> 4-byte widening is exact, so scores do not change.
 * - in memory (no weightFiles: unit tests and the benchmark's "float32 resident" baseline): tensors
 *   are decoded to float32 in JS and handed over as in-memory external data; onnxruntime copies them.
 * - as inputs (GraphOptions.weightInputs): the few tensors variants of a sweep edit, fed per run as float32.
 * Overrides are rounded to the checkpoint's dtype first, as a saved variant would be.
 */
class WeightLoader {
  private inits = new Map<string, { name: string; type: ElemType }>()
  private casts = new Map<GraphBuilder, Map<string, string>>()
  constructor(
    private g: GraphBuilder, readonly ckpt: Checkpoint, private edits: VariantEdits, private files?: WeightFiles,
    private compute: ComputePrecision = 'float32', private inputs: ReadonlySet<string> = new Set(),
  ) {}

  /** `name` in the graph's compute dtype (float32 unless GraphOptions.precision), usable in `scope` (the root graph or a control-flow body). */
  float(name: string, scope: GraphBuilder): string {
    return this.as(name, scope, this.compute)
  }

  /** `name` as float32 whatever the compute dtype (float32 islands, precision.ts). */
  float32(name: string, scope: GraphBuilder): string {
    return this.as(name, scope, 'float32')
  }

  private as(name: string, scope: GraphBuilder, type: ComputePrecision): string {
    const init = this.initializer(name, scope)
    if (init.type === 'float32' && type === 'float32') return init.name
    let cached = this.casts.get(scope)
    if (!cached) this.casts.set(scope, (cached = new Map()))
    const key = `${type}:${name}`
    const hit = cached.get(key)
    if (hit) return hit
    // Mapped weights: Reshape to its own shape, given as a value onnxruntime cannot know before run time:
    // a zero-copy view that keeps the initializer out of constant folding (which would widen every weight
    // into a float32 copy at session creation) and out of pre-packing (another copy). A weight stored in
    // the compute dtype (float16 weights of a float16 graph) is used through the view as it is. In-memory
    // (float32) weights of a half graph are cast once, folded at session creation.
    const view = this.files ? scope.op('Reshape', [init.name, this.runtimeShape(this.ckpt.tensors.get(name)!.shape)]) : init.name
    const out = init.type === type ? view : scope.op('Cast', [view], { to: ONNX_TYPE_OF[type] })
    cached.set(key, out)
    return out
  }

  private shapes = new Map<string, string>()
  private zero?: string
  /** `dims` as an int64 [rank] value computed from input_ids' shape (always `dims`; opaque to constant folding). */
  private runtimeShape(dims: number[]): string {
    const key = dims.join(',')
    const hit = this.shapes.get(key)
    if (hit) return hit
    this.zero ??= this.g.op('Mul', [this.g.op('Gather', [this.g.op('Shape', ['input_ids']), this.g.scalarInt(0)], { axis: 0 }), this.g.scalarInt(0)])
    const out = this.g.op('Add', [this.g.constInt(dims), this.zero])
    this.shapes.set(key, out)
    return out
  }

  /** Rows `indices` of the 2-D tensor `name` as float32 (gathers before widening: the embedding table is never widened whole). */
  rows(name: string, indices: string, scope: GraphBuilder): string {
    const init = this.initializer(name)
    const rows = scope.op('Gather', [init.name, indices], { axis: 0 })
    return init.type === this.compute ? rows : scope.op('Cast', [rows], { to: ONNX_TYPE_OF[this.compute] })
  }

  /** Whether `name` reaches the graph in half precision (then a Gemm with transB beats a Transpose per run). */
  isHalf(name: string): boolean {
    return this.initializer(name).type !== 'float32'
  }

  /**
   * `name` as an initializer `scope` can read. A mapped checkpoint weight read in a control-flow body is
   * declared in that body (again in each body that reads it; the same file range, mapped once):
   * onnxruntime hands every body the names of all graphs around it at each graph resolve, so 18k weights
   * in the main graph made session creation superlinear in layers (Qwen3 tiny 48 x 128 with layer bodies:
   * 20.1 -> 17.7 CPU s; 12 -> 48 layers 4.3x -> 4.0x). Same values; a constant weight is pre-packed as
   * before (onnxruntime pre-packs outer-scope constants one body level deep only). The others stay in
   * the main graph: in-memory weights and derived tensors (onnxruntime finds in-memory external data
   * there only), and files that bodies cannot read (see bodyLocation).
   */
  private initializer(name: string, scope: GraphBuilder = this.g): { name: string; type: ElemType } {
    const local = this.files && scope !== this.g && !this.inputs.has(name) ? this.bodyLocation(name) : undefined
    const key = local ? `${name}@${scope.name}` : name
    const hit = this.inits.get(key)
    if (hit) return hit
    const entry = this.ckpt.tensors.get(name)!
    const override = this.edits.overrides[name]
    if (override) checkOverrideSize(name, entry.shape, override)
    let init: { name: string; type: ElemType }
    if (this.inputs.has(name)) {
      // Fed per run (GraphOptions.weightInputs): already float32, used as it comes (no Reshape view needed:
      // an input is never folded or pre-packed).
      init = { name: this.g.input(weightInputName(name), 'float32', entry.shape), type: 'float32' }
    } else if (!this.files) {
      const bytes = override ? overrideBytes(override, entry.dtype) : this.ckpt.readRaw(name)
      const data = entry.dtype === 'F32' ? bytes : asBytes(decodeToFloat32(bytes, entry.dtype))
      init = { name: this.g.externalInitializer(`w:${name}`, 'float32', entry.shape, name, data), type: 'float32' }
    } else if (override && isStoredOverride(override)) {
      // A replaced tensor stored by the method or the variant folder: mapped from that file, never copied.
      const type = ELEM_OF_DTYPE[override.dtype]
      init = { name: this.g.fileInitializer(`w:${name}`, type, entry.shape, path.relative(this.files.base, override.file), override.offset, override.byteLength), type }
    } else {
      const type = ELEM_OF_DTYPE[entry.dtype]
      let source: { location: string; offset: number; length: number }
      if (override || entry.fp8) {
        const bytes = override ? overrideBytes(override, entry.dtype) : this.ckpt.readRaw(name)
        source = { ...this.files.appendDerived(bytes), length: bytes.byteLength }
      } else {
        this.ckpt.checkFinite(name)
        source = { location: local ?? path.relative(this.files.base, entry.file), offset: entry.offset, length: entry.byteLength }
      }
      init = {
        name: local
          ? scope.bodyFileInitializer(`w:${key}`, type, entry.shape, source.location, source.offset, source.length)
          : this.g.fileInitializer(`w:${name}`, type, entry.shape, source.location, source.offset, source.length),
        type,
      }
    }
    this.inits.set(key, init)
    return init
  }

  private bodyFiles = new Map<string, string>()
  /**
   * The location a body declares checkpoint tensor `name` with, or undefined when it must stay in the main
   * graph: an edited or FP8 tensor (derived), or a file with several hard links. onnxruntime refuses, for
   * initializers of a body only, a symbolic link (so the link is resolved: a Hugging Face cache folder
   * links every file to its blob) and a file with several hard links. A link added later changes the
   * file's ctime, hence the graph's key (graphStore.ts checkpointIdentity): the graph is built again.
   */
  private bodyLocation(name: string): string | undefined {
    const entry = this.ckpt.tensors.get(name)!
    if (this.edits.overrides[name] || entry.fp8) return undefined
    let location = this.bodyFiles.get(entry.file)
    if (location === undefined) {
      const real = fs.realpathSync(entry.file)
      location = fs.statSync(real).nlink === 1 ? path.relative(this.files!.base, real) : ''
      this.bodyFiles.set(entry.file, location)
    }
    return location || undefined
  }
}

const asBytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)

function rmsNorm(g: GraphBuilder, p: Precision, x: string, weight: string, eps: number): string {
  // Variance and normalisation in float32, the weight product in the compute dtype (precision.ts).
  const x32 = p.toFloat32(g, x)
  const variance = g.op('ReduceMean', [g.op('Mul', [x32, x32]), g.constInt([-1])], { keepdims: 1 })
  const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [variance, g.scalarFloat(eps)])])])
  return g.op('Mul', [weight, p.toCompute(g, g.op('Mul', [x32, inv]))])
}

function linear(g: GraphBuilder, x: string, w: string, b?: string): string {
  return g.op('Gemm', b ? [x, w, b] : [x, w], { transB: 1 })
}

function silu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])])
}

function swiglu(g: GraphBuilder, weights: ComputeWeights, e: ExpertNames, x: string): string {
  const hidden = g.op('Mul', [silu(g, linear(g, x, weights.float(e.gate, g))), linear(g, x, weights.float(e.up, g))])
  return linear(g, hidden, weights.float(e.down, g))
}

/**
 * How a scoring graph leaves padding out (issue 10): a batch is B right-padded rows of T positions, and
 * with the lengths of real prompts about a quarter of the B x T positions are padding (bench:scale part
 * (e), 2048-token batches). Every node that works token by token (embedding, norms, projections,
 * rotary, router, experts) runs on the N real tokens in row-major order; only the attention core needs
 * the [B, T] layout, and gets it by `spread`. A padding position then holds a copy of some real token's
 * query, key and value: its key is masked (-inf bias) and its query's output is dropped, so no score
 * depends on it, as none depended on the padding tokens' own values before.
 */
interface Padding {
  /** int64 [N]: flat position b*T + t of each real token (its row in the compact layout). */
  real: string
  /** int64 [B*T]: the compact row of each position's token (padding: the row's last real token). */
  spread: string
  /** int64 [B*T]: the compact row of a real position (score_positions index it). */
  index: string
}

function dropPadding(g: GraphBuilder, valid: string): Padding {
  const real = g.op('Reshape', [g.op('NonZero', [valid]), g.constInt([-1])])
  const index = g.op('Sub', [g.op('CumSum', [g.op('Cast', [valid], { to: 7 }), g.scalarInt(0)]), g.scalarInt(1)])
  // Rows are right-padded and never empty, so only a batch starting with padding would give -1 here.
  return { real, index, spread: g.op('Max', [index, g.scalarInt(0)]) }
}

/**
 * How attention covers a batch's queries (sequenceChunks.ts attentionRows): `long` (bool scalar) when
 * B·H·T² scores exceed limits.attention; attention then runs `passes` blocks of `rows` queries
 * each (`pads` extends axis 3 of a rank-5 query tensor to passes·rows), with each block's bias computed
 * in its pass. Otherwise one pass with `bias` [B, 1, 1, T, T], built once for every layer (an empty
 * tensor when long: the whole bias is what must not be built then).
 */
interface AttentionPlan {
  /** Absent in a graph that always attends in one pass (half precision). */
  long?: string
  rows: string
  passes: string
  pads: string
  bias: string
  branch: string
  /** int64 scalars: rows and positions of the padded batch. */
  B: string
  T: string
}

function attentionPlan(g: GraphBuilder, branch: string, bt: string, heads: number, limits: ChunkLimits, blocks: boolean): AttentionPlan {
  const B = g.op('Gather', [bt, g.scalarInt(0)], { axis: 0 })
  const T = g.op('Gather', [bt, g.scalarInt(1)], { axis: 0 })
  const wholeBias = (b: GraphBuilder) => biasRows(b, branch, branch, b.op('Range', [g.scalarInt(0), T, g.scalarInt(1)]), T)
  if (!blocks) return { rows: '', passes: '', pads: '', bias: wholeBias(g), branch, B, T }
  const perQuery = g.op('Mul', [g.op('Mul', [B, T]), g.scalarInt(heads)]) // B·H·T scores per query row
  const long = g.op('Greater', [g.op('Mul', [perQuery, T]), g.scalarInt(limits.attention)])
  // Equal blocks (sequenceChunks.ts attentionRows): the fewest passes of at most `block` rows, each of ceil(T / passes) rows.
  const block = g.op('Min', [g.op('Max', [g.op('Div', [g.scalarInt(limits.attention), perQuery]), g.scalarInt(2)]), T])
  const passes = g.op('Div', [g.op('Add', [T, g.op('Sub', [block, g.scalarInt(1)])]), block])
  const rows = g.op('Div', [g.op('Add', [T, g.op('Sub', [passes, g.scalarInt(1)])]), passes])
  const padEnd = g.op('Sub', [g.op('Mul', [passes, rows]), T])
  const pads = g.op('Concat', [g.constInt([0, 0, 0, 0, 0, 0, 0, 0]), g.op('Unsqueeze', [padEnd, g.constInt([0])]), g.constInt([0])], { axis: 0 })
  const skip = g.subgraph(g.fresh('bias_skipped'))
  const none = skip.op('Identity', [g.constFloat([], [1, 1, 1, 0, 0])])
  const whole = g.subgraph(g.fresh('bias_whole'))
  const full = wholeBias(whole)
  const dims = ['B', 1, 1, 'T', 'T']
  const bias = g.op('If', [long], { then_branch: skip.toGraph([{ name: none, type: 'float32', dims }]), else_branch: whole.toGraph([{ name: full, type: 'float32', dims }]) })
  return { long, rows, passes, pads, bias, branch, B, T }
}

/**
 * Attention bias [B, 1, 1, Q, T] for queries at positions `queryIdx` [Q] (`queryBranch` [B, Q] their
 * branch ids) over the keys at positions 0..T-1 (`branch` [B, T] their branch ids): 0 where the key is
 * allowed (causal, same branch or the shared prefix, not padding), -inf elsewhere.
 */
function biasRows(g: GraphBuilder, queryBranch: string, branch: string, queryIdx: string, T: string): string {
  const keyIdx = g.op('Range', [g.scalarInt(0), T, g.scalarInt(1)])
  const k = g.op('Unsqueeze', [keyIdx, g.constInt([0])]), q = g.op('Unsqueeze', [queryIdx, g.constInt([1])])
  const causal = g.op('LessOrEqual', [k, q]) // [Q, T]: k <= q
  const bq = g.op('Unsqueeze', [queryBranch, g.constInt([2])]) // [B, Q, 1]
  const bk = g.op('Unsqueeze', [branch, g.constInt([1])]) // [B, 1, T]
  const sameOrShared = g.op('Or', [g.op('Equal', [bq, bk]), g.op('Equal', [bk, g.scalarInt(0)])])
  const keyValid = g.op('GreaterOrEqual', [bk, g.scalarInt(0)])
  const allowed = g.op('And', [g.op('And', [sameOrShared, keyValid]), causal])
  const bias = g.op('Where', [allowed, g.scalarFloat(0), g.scalarFloat(NEG_INF)])
  // A padding row may have no allowed key; give it its own diagonal so its softmax stays finite.
  const selfOnly = g.op('Where', [g.op('Equal', [k, q]), g.scalarFloat(0), g.scalarFloat(NEG_INF)])
  const rowHasKey = g.op('ReduceMax', [g.op('Cast', [allowed], { to: 1 }), g.constInt([-1])], { keepdims: 1 })
  const safe = g.op('Where', [g.op('Greater', [rowHasKey, g.scalarFloat(0)]), bias, selfOnly])
  return g.op('Unsqueeze', [safe, g.constInt([1, 2])]) // [B, 1, 1, Q, T]
}

/**
 * The attention context [B, X, Y, T, dim] (compute dtype `type`) of `core`, which maps query tensors
 * (each [B, ·, ·, Q, ·], queries on axis 3) and their bias [B, 1, 1, Q, T] to [B, X, Y, Q, dim]: in one
 * pass, or block by block in a Loop when the plan says long. Each query row's scores, softmax and
 * context depend on that row alone, so the blocks give the one pass's numbers.
 */
function overQueries(g: GraphBuilder, plan: AttentionPlan, queries: string[], type: ElemType, [X, Y, dim]: number[], core: (b: GraphBuilder, queries: string[], bias: string, keys: KeyRange) => string): string {
  const allKeys: KeyRange = x => x
  if (plan.long === undefined) return core(g, queries, plan.bias, allKeys)
  const dims = (q: string | number) => ['B', X!, Y!, q, dim!]
  const direct = g.subgraph(g.fresh('attention_direct'))
  const whole = core(direct, queries, plan.bias, allKeys)
  const blocked = g.subgraph(g.fresh('attention_blocked'))
  const padded = queries.map(q => blocked.op('Pad', [q, plan.pads]))
  const body = blocked.subgraph(g.fresh('attention_block'))
  const pass = body.input(g.fresh('pass'), 'int64', [])
  const cond = body.input(g.fresh('cond'), 'bool', [])
  const start = body.op('Mul', [pass, plan.rows])
  const end = body.op('Add', [start, plan.rows])
  const [from, to] = [start, end].map(x => body.op('Unsqueeze', [x, g.constInt([0])]))
  const block = padded.map(q => body.op('Slice', [q, from!, to!, g.constInt([3])]))
  // Rows past T (the last block's padding) repeat the last query; their context is sliced off below.
  const queryIdx = body.op('Min', [body.op('Range', [start, end, g.scalarInt(1)]), body.op('Sub', [plan.T, g.scalarInt(1)])])
  // Causal: no query of the block sees a key after its last one, so the pass reads keys [0, keyEnd)
  // only (about half the work over a sequence). Those keys' -inf add exact zeros to the softmax sum
  // and their zero probabilities exact zeros to the context, so the numbers are one pass's.
  const keyEnd = body.op('Min', [end, plan.T])
  const keyTo = body.op('Unsqueeze', [keyEnd, g.constInt([0])])
  const keys: KeyRange = (x, axis) => body.op('Slice', [x, g.constInt([0]), keyTo, g.constInt([axis])])
  const bias = biasRows(body, body.op('Gather', [plan.branch, queryIdx], { axis: 1 }), keys(plan.branch, 1), queryIdx, keyEnd)
  const ctx = core(body, block, bias, keys)
  const [scan] = blocked.opN('Loop', [plan.passes, ''], 1, {
    body: body.toGraph([{ name: body.op('Identity', [cond]), type: 'bool', dims: [] }, { name: ctx, type, dims: dims('Q') }]),
  })
  // [passes, B, X, Y, rows, dim] → [B, X, Y, passes·rows, dim] → the first T queries.
  const joined = blocked.op('Reshape', [blocked.op('Transpose', [scan!], { perm: [1, 2, 3, 0, 4, 5] }), blocked.op('Concat', [blocked.op('Unsqueeze', [plan.B, g.constInt([0])]), g.constInt([X!, Y!, -1, dim!])], { axis: 0 })])
  const out = blocked.op('Slice', [joined, g.constInt([0]), blocked.op('Unsqueeze', [plan.T, g.constInt([0])]), g.constInt([3])])
  return g.op('If', [plan.long], { then_branch: blocked.toGraph([{ name: out, type, dims: dims('T') }]), else_branch: direct.toGraph([{ name: whole, type, dims: dims('T') }]) })
}

/** The keys one attention pass reads: `x` cut to them on its key axis (all of them in one pass). */
type KeyRange = (x: string, axis: number) => string

/**
 * Per-row results of `perBlock` over blocks of at most `rowsPerPass` rows of `inputs` (axis 0, M rows),
 * in a Loop, joined back in order as the outputs `names` (each [M]); in one pass in the graph itself
 * when rowsPerPass is undefined. perBlock maps the block's inputs to 1-D values, one per row. Blocks
 * are equal; the last is padded with zeros (row 0 and token 0, both valid), whose results are cut off.
 */
function overRows(g: GraphBuilder, inputs: string[], rowsPerPass: number | undefined, perBlock: (b: GraphBuilder, block: string[]) => { value: string; type: ElemType }[], names: string[]): void {
  if (rowsPerPass === undefined) {
    perBlock(g, inputs).forEach((o, i) => g.op('Identity', [o.value], {}, names[i]))
    return
  }
  const M = g.op('Gather', [g.op('Shape', [inputs[0]!]), g.scalarInt(0)], { axis: 0 })
  // At least one pass of at least one row, so no Loop output is ever empty-shaped (M = 0 gives [0] below).
  // Equal blocks (sequenceChunks.ts headRows), so the padding stays under one row per pass.
  const block = g.op('Max', [g.op('Min', [g.scalarInt(rowsPerPass), M]), g.scalarInt(1)])
  const passes = g.op('Max', [g.op('Div', [g.op('Add', [M, g.op('Sub', [block, g.scalarInt(1)])]), block]), g.scalarInt(1)])
  const rows = g.op('Max', [g.op('Div', [g.op('Add', [M, g.op('Sub', [passes, g.scalarInt(1)])]), passes]), g.scalarInt(1)])
  const padEnd = g.op('Sub', [g.op('Mul', [passes, rows]), M])
  const padded = inputs.map(x => g.op('Pad', [x, g.op('Concat', [g.constInt([0]), g.op('Unsqueeze', [padEnd, g.constInt([0])])], { axis: 0 })]))
  const body = g.subgraph(g.fresh('row_block'))
  const pass = body.input(g.fresh('pass'), 'int64', [])
  const cond = body.input(g.fresh('cond'), 'bool', [])
  const start = body.op('Mul', [pass, rows])
  const [from, to] = [start, body.op('Add', [start, rows])].map(x => body.op('Unsqueeze', [x, g.constInt([0])]))
  const outs = perBlock(body, padded.map(x => body.op('Slice', [x, from!, to!, g.constInt([0])])))
  const scans = g.opN('Loop', [passes, ''], outs.length, {
    body: body.toGraph([{ name: body.op('Identity', [cond]), type: 'bool', dims: [] }, ...outs.map(o => ({ name: o.value, type: o.type, dims: ['R'] }))]),
  })
  const end = g.op('Unsqueeze', [M, g.constInt([0])])
  scans.forEach((scan, i) => g.op('Slice', [g.op('Reshape', [scan, g.constInt([-1])]), g.constInt([0]), end, g.constInt([0])], {}, names[i]))
}

/**
 * cos/sin [N, 1, r] for rotate_half rotary embeddings over the rotary dimension r, from the inverse
 * frequencies transformers computes (modeling_rope_utils: default or YaRN), times its attention
 * factor (YaRN's cos/sin scaling; 1 for default rope).
 */
function rotaryTables(g: GraphBuilder, spec: ModelSpec, pos: string, precision: Precision): [string, string] {
  const r = spec.rope.dim
  const inv = Float32Array.from(spec.rope.invFreq)
  const p = g.op('Cast', [g.op('Reshape', [pos, g.constInt([-1, 1])])], { to: 1 }) // [N, 1]
  const freqs = g.op('Mul', [p, g.constFloat(inv, [1, r / 2])])
  const emb = g.op('Concat', [freqs, freqs], { axis: 1 })
  const shape = g.constInt([-1, 1, r])
  let cos = g.op('Cos', [emb]), sin = g.op('Sin', [emb])
  if (spec.rope.attentionFactor !== 1) {
    const f = g.scalarFloat(spec.rope.attentionFactor)
    cos = g.op('Mul', [cos, f])
    sin = g.op('Mul', [sin, f])
  }
  // Computed in float32; rounded to the compute dtype as HF's `cos.to(dtype=x.dtype)`, except where the
  // family rotates in float32 (precision.ts rotaryInFloat32).
  const out = (t: string) => (precision.rotaryInFloat32(spec) ? t : precision.toCompute(g, t))
  return [out(g.op('Reshape', [cos, shape])), out(g.op('Reshape', [sin, shape]))]
}

function applyRotary(g: GraphBuilder, x: string, cos: string, sin: string, hd: number): string {
  // x: [N, heads, hd]
  const [x1, x2] = g.opN('Split', [x, g.constInt([hd / 2, hd / 2])], 2, { axis: -1 })
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 })
  return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])])
}

/**
 * Rotary embedding on adjacent pairs (x[2i], x[2i+1]): DeepSeek-V2's complex form and V3's
 * apply_rotary_pos_emb_interleave. Like transformers V3 it reorders the pairs to (evens, odds) and then
 * rotates halves; q and k get the same order, so their dot products are those of the complex form.
 */
function applyRotaryInterleaved(g: GraphBuilder, x: string, cos: string, sin: string, heads: number, r: number): string {
  const pairs = g.op('Reshape', [x, g.constInt([-1, heads, r / 2, 2])])
  const halves = g.op('Reshape', [g.op('Transpose', [pairs], { perm: [0, 1, 3, 2] }), g.constInt([-1, heads, r])])
  return applyRotary(g, halves, cos, sin, r)
}

function attention(g: GraphBuilder, spec: ModelSpec, weights: ComputeWeights, li: number, h: string, bt: string, cos: string, sin: string, plan: AttentionPlan, padding?: Padding): string {
  if (spec.mla) return mlaAttention(g, spec, weights, li, h, bt, cos, sin, plan, padding)
  const padded = (x: string) => (padding ? g.op('Gather', [x, padding.spread], { axis: 0 }) : x)
  const n = weights.ckpt.names.layers[li]
  const { numHeads: H, numKvHeads: KV, headDim: hd } = spec
  const bOpt = (name?: string) => (name ? weights.float(name, g) : undefined)
  let q = linear(g, h, weights.float(n.q!, g), bOpt(n.qBias))
  let k = linear(g, h, weights.float(n.k!, g), bOpt(n.kBias))
  let v = linear(g, h, weights.float(n.v!, g), bOpt(n.vBias))
  if (spec.qkNorm === 'full') {
    q = rmsNorm(g, weights.precision, q, weights.float(n.qNorm!, g), spec.rmsNormEps)
    k = rmsNorm(g, weights.precision, k, weights.float(n.kNorm!, g), spec.rmsNormEps)
  }
  if (spec.clipQkv !== null) {
    const lo = weights.precision.scalar(g, -spec.clipQkv), hi = weights.precision.scalar(g, spec.clipQkv)
    q = g.op('Clip', [q, lo, hi])
    k = g.op('Clip', [k, lo, hi])
    v = g.op('Clip', [v, lo, hi])
  }
  q = g.op('Reshape', [q, g.constInt([-1, H, hd])])
  k = g.op('Reshape', [k, g.constInt([-1, KV, hd])])
  v = g.op('Reshape', [v, g.constInt([-1, KV, hd])])
  if (spec.qkNorm === 'head') {
    q = rmsNorm(g, weights.precision, q, weights.float(n.qNorm!, g), spec.rmsNormEps)
    k = rmsNorm(g, weights.precision, k, weights.float(n.kNorm!, g), spec.rmsNormEps)
  }
  q = applyRotary(g, q, cos, sin, hd)
  k = applyRotary(g, k, cos, sin, hd)
  const rep = H / KV
  // q → [B, KV, rep, T, hd]; k, v → [B, KV, 1, T, hd]; GQA by broadcasting, no copies of k/v.
  const qShape = g.op('Concat', [bt, g.constInt([KV, rep, hd])], { axis: 0 })
  const kvShape = g.op('Concat', [bt, g.constInt([KV, 1, hd])], { axis: 0 })
  const q5 = g.op('Transpose', [g.op('Reshape', [padded(q), qShape])], { perm: [0, 2, 3, 1, 4] })
  const kT = g.op('Transpose', [g.op('Reshape', [padded(k), kvShape])], { perm: [0, 2, 3, 4, 1] }) // [B, KV, 1, hd, T]
  const v5 = g.op('Transpose', [g.op('Reshape', [padded(v), kvShape])], { perm: [0, 2, 3, 1, 4] })
  // Mask and softmax in float32, probabilities back in the compute dtype (precision.ts).
  // The scale is applied to each block's queries, next to their MatMul: onnxruntime folds a scalar Mul
  // into the MatMul (FusedMatMul alpha, other roundings) only within one graph, and the If / Loop
  // bodies are graphs of their own; scaled outside them, logprobs moved by up to 2e-6.
  const ctx = overQueries(g, plan, [q5], weights.precision.elemType, [KV, rep, hd], (b, [q], bias, keys) => {
    const qs = b.op('Mul', [q!, weights.precision.scalar(g, spec.attentionScale)])
    const scores = b.op('Add', [weights.precision.toFloat32(b, b.op('MatMul', [qs, keys(kT, 4)])), bias])
    const probs = weights.precision.toCompute(b, b.op('Softmax', [scores], { axis: -1 }))
    return b.op('MatMul', [probs, keys(v5, 3)])
  }) // [B, KV, rep, T, hd]
  const merged = g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 3, 1, 2, 4] }), g.constInt([-1, H * hd])])
  return linear(g, padding ? g.op('Gather', [merged, padding.real], { axis: 0 }) : merged, weights.float(n.o, g), bOpt(n.oBias))
}

/**
 * DeepSeek's Multi-head Latent Attention (transformers DeepseekV2Attention / DeepseekV3Attention):
 * q = q_proj(h) or q_b_proj(RMSNorm_1e-6(q_a_proj(h))), split per head into [nope | rope];
 * kv_a_proj_with_mqa(h) = [latent | k_rope]; kv_b_proj(RMSNorm_1e-6(latent)) = per head [k_nope | v];
 * k_rope is one head shared by all heads. Rotary on the rope parts only. Scores are computed as
 * q_nope·k_nope + q_rope·k_rope (the concatenation's dot product) without materialising the shared
 * k_rope per head.
 */
function mlaAttention(g: GraphBuilder, spec: ModelSpec, weights: ComputeWeights, li: number, h: string, bt: string, cos: string, sin: string, plan: AttentionPlan, padding?: Padding): string {
  const n = weights.ckpt.names.layers[li]
  const m = spec.mla!, names = n.mla!
  const H = spec.numHeads
  const { qkNopeHeadDim: nope, qkRopeHeadDim: r, vHeadDim: vd, kvLoraRank: kvr } = m
  const bOpt = (name?: string) => (name ? weights.float(name, g) : undefined)
  const q = names.qProj
    ? linear(g, h, weights.float(names.qProj, g))
    : linear(g, rmsNorm(g, weights.precision, linear(g, h, weights.float(names.qA!, g), bOpt(names.qABias)), weights.float(names.qANorm!, g), m.latentNormEps), weights.float(names.qB!, g))
  const q3 = g.op('Reshape', [q, g.constInt([-1, H, nope + r])])
  const compressed = linear(g, h, weights.float(names.kvA, g), bOpt(names.kvABias)) // [N, kvr + r]
  const [latent, kRope] = g.opN('Split', [compressed, g.constInt([kvr, r])], 2, { axis: -1 })
  const kv = g.op('Reshape', [linear(g, rmsNorm(g, weights.precision, latent, weights.float(names.kvANorm, g), m.latentNormEps), weights.float(names.kvB, g)), g.constInt([-1, H, nope + vd])])
  const [kNope, v] = g.opN('Split', [kv, g.constInt([nope, vd])], 2, { axis: -1 })
  const p = weights.precision
  // DeepSeek-V2 rotates in float32 (its cos/sin tables are then float32; precision.ts).
  const f32Rope = p.rotaryInFloat32(spec)
  const rotate = (x0: string, heads: number) => {
    const x = f32Rope ? p.toFloat32(g, x0) : x0
    const y = m.interleave ? applyRotaryInterleaved(g, x, cos, sin, heads, r) : applyRotary(g, x, cos, sin, r)
    return f32Rope ? p.toCompute(g, y) : y
  }
  const kRot = rotate(g.op('Reshape', [kRope, g.constInt([-1, 1, r])]), 1) // [N, 1, r]
  // [B, T, heads, 1, dim] → queries [B, heads, 1, T, dim], keys [B, heads, 1, dim, T].
  const to5 = (x: string, heads: number, dim: number) => g.op('Reshape', [padding ? g.op('Gather', [x, padding.spread], { axis: 0 }) : x, g.op('Concat', [bt, g.constInt([heads, 1, dim])], { axis: 0 })])
  const asQuery = (x: string, heads: number, dim: number) => g.op('Transpose', [to5(x, heads, dim)], { perm: [0, 2, 3, 1, 4] })
  const asKey = (x: string, heads: number, dim: number) => g.op('Transpose', [to5(x, heads, dim)], { perm: [0, 2, 3, 4, 1] })
  const qRot = rotate(qRopeOf(g, q3, nope, r), H)
  // Scores summed, scaled, masked and normalised in float32 (precision.ts).
  const kRotT = asKey(kRot, 1, r), kNopeT = nope > 0 ? asKey(kNope, H, nope) : '', v5 = asQuery(v, H, vd)
  const queries = [asQuery(qRot, H, r), ...(nope > 0 ? [asQuery(qNopeOf(g, q3, nope), H, nope)] : [])]
  const ctx = overQueries(g, plan, queries, p.elemType, [H, 1, vd], (b, [qr, qn], bias, keys) => {
    let scores = p.toFloat32(b, b.op('MatMul', [qr!, keys(kRotT, 4)])) // [B, H, 1, Q, T]
    if (qn) scores = b.op('Add', [p.toFloat32(b, b.op('MatMul', [qn, keys(kNopeT, 4)])), scores])
    scores = b.op('Add', [b.op('Mul', [scores, g.scalarFloat(spec.attentionScale)]), bias])
    const probs = p.toCompute(b, b.op('Softmax', [scores], { axis: -1 }))
    return b.op('MatMul', [probs, keys(v5, 3)])
  }) // [B, H, 1, T, vd]
  const merged = g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 3, 1, 2, 4] }), g.constInt([-1, H * vd])])
  return linear(g, padding ? g.op('Gather', [merged, padding.real], { axis: 0 }) : merged, weights.float(n.o, g), bOpt(n.oBias))
}

function qNopeOf(g: GraphBuilder, q3: string, nope: number): string {
  return g.op('Slice', [q3, g.constInt([0]), g.constInt([nope]), g.constInt([2])])
}

function qRopeOf(g: GraphBuilder, q3: string, nope: number, r: number): string {
  return g.op('Slice', [q3, g.constInt([nope]), g.constInt([nope + r]), g.constInt([2])])
}

/** Expert groups per If body in the scoring path (moeBlock): small enough that planning a body is cheap. */
const EXPERTS_PER_BODY = 16

interface ExpertGroup {
  /** Slots routed to this weight set (one unless slots are bound together). */
  members: number[]
  /** Slot whose weights are used. */
  source: number
}

function expertGroups(layer: MoeLayerSpec, hooks: LayerHooks): ExpertGroup[] {
  const disabled = new Set(hooks.disabled ?? [])
  const novices = new Set(Object.keys(hooks.novices ?? {}).map(Number))
  const bySource = new Map<number, number[]>()
  for (let e = 0; e < layer.numExperts; e++) {
    if (disabled.has(e) || novices.has(e)) continue
    const src = hooks.bindings?.[e] ?? e
    if (!bySource.has(src)) bySource.set(src, [])
    bySource.get(src)!.push(e)
  }
  return [...bySource.entries()].sort((a, b) => a[0] - b[0]).map(([source, members]) => ({ source, members }))
}

function moeBlock(
  g: GraphBuilder, spec: ModelSpec, weights: ComputeWeights, layer: MoeLayerSpec, h: string, valid: string,
  hooks: LayerHooks, calib: CalibrationOutputs, report: Report,
  dense: boolean, maskInput?: string, flat = false,
): string {
  const n = weights.ckpt.names.layers[layer.index]
  const L = layer.index
  const E = layer.numExperts
  const d = spec.hiddenSize
  const p = weights.precision
  // Routing runs in float32 from the logits on; DeepSeek computes the router Linear itself in float32.
  // The gates stay float32 and the experts' weighted outputs are summed in float32 (precision.ts).
  let routerLogits = p.routerInFloat32(spec)
    ? linear(g, p.toFloat32(g, h), weights.float32(n.router!, g))
    : p.toFloat32(g, linear(g, h, weights.float(n.router!, g)))
  if (calib.routerLogits) {
    g.op('Identity', [routerLogits], {}, report(`router_logits_${L}`, 'float32', ['N', E]))
  }
  const topK = hooks.topK ?? layer.topK
  let [topW, topI, scores] = routeTopK(g, layer, weights, routerLogits, hooks.disabled ?? [], topK, maskInput)
  if (calib.routerLogits) {
    // The per-expert scores the gates are taken from: softmax over the surviving experts, or
    // DeepSeek-V3's sigmoid (independent per expert; the correction bias is not in them).
    g.op('Identity', [scores], {}, report(`router_scores_${L}`, 'float32', ['N', E]))
  }
  if (hooks.skipSecondBeta !== undefined) {
    // NAEE: drop the second expert where w2 / w1 < beta (decided on the pre-renormalisation weights).
    const [w1, w2] = g.opN('Split', [topW, g.constInt([1, 1])], 2, { axis: 1 })
    const keep2 = g.op('GreaterOrEqual', [g.op('Div', [w2, w1]), g.scalarFloat(hooks.skipSecondBeta)])
    topW = g.op('Concat', [w1, g.op('Where', [keep2, w2, g.scalarFloat(0)])], { axis: 1 })
    // A skipped slot must not count as routed: point it at an index no expert has.
    const [i1, i2] = g.opN('Split', [topI, g.constInt([1, 1])], 2, { axis: 1 })
    topI = g.op('Concat', [i1, g.op('Where', [keep2, i2, g.scalarInt(-1)])], { axis: 1 })
  }
  if (layer.normTopK || hooks.skipSecondBeta !== undefined) {
    let sum = g.op('ReduceSum', [topW, g.constInt([1])], { keepdims: 1 })
    // DeepSeek (transformers DeepseekV3TopkRouter, Hub V2 MoEGate): denominator = sum + 1e-20.
    if (layer.router.normEpsilon) sum = g.op('Add', [sum, g.scalarFloat(layer.router.normEpsilon)])
    topW = g.op('Div', [topW, sum])
  }
  if (layer.router.routedScalingFactor !== 1) topW = g.op('Mul', [topW, g.scalarFloat(layer.router.routedScalingFactor)])
  if (calib.routerLogits) {
    // The routing the graph actually used, so statistics never disagree with it on near-ties.
    g.op('Identity', [topI], {}, report(`topk_indices_${L}`, 'int64', ['N', topK]))
    g.op('Identity', [topW], {}, report(`topk_weights_${L}`, 'float32', ['N', topK]))
  }

  // Gate matrix G [N, E] (g_e(x), zero where e is not selected) and routed matrix R [N, E]
  // (1 where e is among the token's top-k and the token is not padding), built once per layer.
  const onehot = g.op('Cast', [g.op('Equal', [g.op('Unsqueeze', [topI, g.constInt([2])]), g.constInt(Array.from({ length: E }, (_, e) => e))])], { to: 1 }) // [N, k, E]
  const gates = g.op('ReduceSum', [g.op('Mul', [onehot, g.op('Unsqueeze', [topW, g.constInt([2])])]), g.constInt([1])], { keepdims: 0 })
  const routedMatrix = g.op('Mul', [g.op('ReduceSum', [onehot, g.constInt([1])], { keepdims: 0 }), g.op('Unsqueeze', [g.op('Cast', [valid], { to: 1 }), g.constInt([1])])])
  // `b` is the graph the nodes go to: the main graph, or an expert chunk's body (see below).
  const column = (m: string, slots: number[], b = g) => {
    const cols = slots.map(e => b.op('Gather', [m, b.scalarInt(e)], { axis: 1 }))
    return cols.reduce((x, y) => b.op('Add', [x, y]))
  }
  const gateOf = (slots: number[], b = g) => column(gates, slots, b)
  const routedRows = (slots: number[], b = g) => b.op('Reshape', [b.op('NonZero', [b.op('Greater', [column(routedMatrix, slots, b), b.scalarFloat(0)])]), b.constInt([-1])])

  let out = g.op('ConstantOfShape', [g.op('Shape', [h])]) // zeros [N, d] (float by default)
  const keepNeurons = hooks.neuronKeep !== undefined && hooks.neuronKeep < 1 ? neuronsKept(hooks.neuronKeep, layer.expertFfn) : 0
  const outputsOnly = (calib.outputsOnly ?? false) && !calib.moeOutputs
  const groups = expertGroups(layer, hooks)
  const perExpert = (calib.expertOutputs ?? false) || (calib.expertHidden ?? false)
  // Expert bodies (below) unless the dense baseline or the reference flat path is asked for.
  const chunked = !dense && !flat
  // An If whose condition is always true, computed from the input so onnxruntime cannot fold it
  // and inline the bodies.
  const always = chunked ? g.op('GreaterOrEqual', [g.op('Size', [h]), g.scalarInt(0)]) : ''
  if (chunked && (!outputsOnly || perExpert)) {
    // Every EXPERTS_PER_BODY groups go into the then_branch of an If. onnxruntime's allocation
    // planner grows superlinearly with the number of dynamically shaped values in one graph (2 layers
    // x 128 experts: 4.8 s, 4 layers: 24 s, 8 layers: 165 s, optimisation disabled or not); bodies are
    // planned apart. With the layers' own nodes still in the main graph creation stayed superlinear in
    // layers (4.5 -> 23.4 CPU s from 12 to 48 layers), hence layer bodies around these (buildScoringGraph
    // `layerBodies`) and the weights declared in the bodies that read them. The per-expert computation is
    // the flat path's (below), so the numbers are identical (tests/engine/scale-graph.test.ts); the
    // routed test is made once per layer and gate columns are gathered as [N, 1] (fewer nodes).
    const routedBool = g.op('Greater', [routedMatrix, g.scalarFloat(0)])
    const gateColumn = (slots: number[], b: GraphBuilder) => slots.map(e => b.op('Gather', [gates, b.constInt([e])], { axis: 1 })).reduce((x, y) => b.op('Add', [x, y]))
    const rowsOf = (slots: number[], b: GraphBuilder) => (slots.length === 1
      ? b.op('Reshape', [b.op('NonZero', [b.op('Gather', [routedBool, b.scalarInt(slots[0]!)], { axis: 1 })]), b.constInt([-1])])
      : routedRows(slots, b))
    const down = !outputsOnly || (calib.expertOutputs ?? false)
    for (let c = 0; c < groups.length; c += EXPERTS_PER_BODY) {
      const body = g.subgraph(`moe_${L}_experts_${c}`)
      const reported: BodyOutput[] = []
      let acc = out
      for (const group of groups.slice(c, c + EXPERTS_PER_BODY)) {
        const names = n.experts![group.source]
        const rows = rowsOf(group.members, body)
        const { hidden, y } = swigluRows(body, weights, names, h, rows, keepNeurons, layer.expertFfn, down)
        for (const e of perExpert ? group.members : []) {
          // Bound slots share the computation; each member's own routed rows are reported.
          const own = group.members.length === 1 ? { rows, hidden, y } : ((r: string) => ({ rows: r, ...swigluRows(body, weights, names, h, r, keepNeurons, layer.expertFfn, down) }))(rowsOf([e], body))
          reported.push(reportedBy(report, `expert_rows_${L}_${e}`, own.rows, 'int64', [`n_${L}_${e}`]))
          if (calib.expertOutputs) reported.push(reportedBy(report, `expert_out_${L}_${e}`, p.toFloat32(body, own.y), 'float32', [`n_${L}_${e}`, d]))
          if (calib.expertHidden) reported.push(reportedBy(report, `expert_hidden_${L}_${e}`, p.toFloat32(body, own.hidden), 'float32', [`n_${L}_${e}`, layer.expertFfn]))
        }
        if (outputsOnly) continue
        const gate = body.op('Gather', [gateColumn(group.members, body), rows], { axis: 0 }) // [n, 1]
        acc = body.op('ScatterND', [acc, body.op('Unsqueeze', [rows, body.constInt([1])]), body.op('Mul', [p.toFloat32(body, y), gate])], { reduction: 'add' })
      }
      const sum = outputsOnly ? [] : [{ name: g.fresh('moe_sum'), value: acc, type: 'float32' as const, dims: ['N', d] }]
      ifBody(g, always, body, [...sum, ...reported], sum.length ? [out] : [])
      if (sum.length) out = sum[0]!.name
    }
  }
  for (const group of chunked ? [] : groups) {  // the flat path
    if (outputsOnly && !calib.expertOutputs && !calib.expertHidden) break
    const names = n.experts![group.source]
    if (dense) {
      const gate = g.op('Unsqueeze', [gateOf(group.members), g.constInt([1])])
      out = g.op('Add', [out, g.op('Mul', [p.toFloat32(g, swiglu(g, weights, names, h)), gate])])
      continue
    }
    const rows = routedRows(group.members)
    const xs = g.op('Gather', [h, rows], { axis: 0 })
    const act = silu(g, linear(g, xs, weights.float(names.gate, g)))
    let hidden = g.op('Mul', [act, linear(g, xs, weights.float(names.up, g))])
    if (keepNeurons) hidden = neuronTopK(g, p, act, hidden, keepNeurons, layer.expertFfn)
    const y = outputsOnly && !calib.expertOutputs ? '' : linear(g, hidden, weights.float(names.down, g))
    if (calib.expertOutputs || calib.expertHidden) {
      for (const e of group.members) {
        // Bound slots share the computation; each member's own routed rows are reported.
        const own = group.members.length === 1 ? { rows, hidden, y } : { rows: routedRows([e]), ...swigluRows(g, weights, names, h, routedRows([e]), keepNeurons, layer.expertFfn) }
        g.op('Identity', [own.rows], {}, report(`expert_rows_${L}_${e}`, 'int64', [`n_${L}_${e}`]))
        if (calib.expertOutputs) g.op('Identity', [p.toFloat32(g, own.y)], {}, report(`expert_out_${L}_${e}`, 'float32', [`n_${L}_${e}`, d]))
        if (calib.expertHidden) g.op('Identity', [p.toFloat32(g, own.hidden)], {}, report(`expert_hidden_${L}_${e}`, 'float32', [`n_${L}_${e}`, layer.expertFfn]))
      }
    }
    if (outputsOnly) continue
    const gate = g.op('Unsqueeze', [g.op('Gather', [gateOf(group.members), rows], { axis: 0 }), g.constInt([1])])
    out = g.op('ScatterND', [out, g.op('Unsqueeze', [rows, g.constInt([1])]), g.op('Mul', [p.toFloat32(g, y), gate])], { reduction: 'add' })
  }
  if (calib.expertOutputsAllTokens && chunked) {
    for (let c = 0; c < E; c += EXPERTS_PER_BODY) {
      const body = g.subgraph(`moe_${L}_all_tokens_${c}`)
      const reported: BodyOutput[] = []
      for (let e = c; e < Math.min(E, c + EXPERTS_PER_BODY); e++) {
        reported.push(reportedBy(report, `expert_out_all_${L}_${e}`, p.toFloat32(body, swiglu(body, weights, n.experts![hooks.bindings?.[e] ?? e], h)), 'float32', ['N', d]))
      }
      ifBody(g, always, body, reported, [])
    }
  } else if (calib.expertOutputsAllTokens) {
    for (let e = 0; e < E; e++) {
      const names = n.experts![hooks.bindings?.[e] ?? e]
      g.op('Identity', [p.toFloat32(g, swiglu(g, weights, names, h))], {}, report(`expert_out_all_${L}_${e}`, 'float32', ['N', d]))
    }
  }
  if (outputsOnly) return p.toCompute(g, out)
  const novices = Object.entries(hooks.novices ?? {}).map(([k, v]) => [Number(k), v] as const).sort((a, b) => a[0] - b[0])
  if (novices.length) {
    // Each novice slot adds g_e(x) · v_e: gates [N, n] @ vectors [n, d].
    const gates = g.op('Concat', novices.map(([e]) => g.op('Unsqueeze', [gateOf([e]), g.constInt([1])])), { axis: 1 })
    const table = new Float32Array(novices.length * d)
    novices.forEach(([, vec], i) => table.set(vec, i * d))
    out = g.op('Add', [out, g.op('MatMul', [gates, g.constFloat(table, [novices.length, d])])])
  }
  out = p.toCompute(g, out)
  if (n.sharedExpert) {
    // Shared experts are always on and never edited by a method (DeepSeek: ungated; Qwen2-MoE: sigmoid gate).
    const shared = swiglu(g, weights, n.sharedExpert, h)
    out = g.op('Add', [out, n.sharedExpertGate ? g.op('Mul', [g.op('Sigmoid', [linear(g, h, weights.float(n.sharedExpertGate, g))]), shared]) : shared])
  }
  return out
}

/**
 * The router's top-k (indices [N, k], weights [N, k] before normalisation and scaling), per the layer's
 * RouterSpec (modelSpec.ts). Disabled experts are removed with physical-removal semantics: a softmax
 * renormalises over the survivors (-inf logits), a sigmoid score is per expert anyway; in every case a
 * disabled expert can be neither a group's top score nor chosen, even from the 0.0 that transformers
 * gives experts of unselected groups. Groups keep their original slots (group of e = e / (E / n_group)),
 * which is exactly the sliced model when each group loses the same number of experts.
 */
function routeTopK(g: GraphBuilder, layer: MoeLayerSpec, weights: ComputeWeights, logits: string, disabled: number[], topK: number, maskInput?: string): [string, string, string] {
  const E = layer.numExperts
  const router = layer.router
  const mask = new Float32Array(E)
  for (const e of disabled) mask[e] = NEG_INF
  const masked = (x: string) => (maskInput ? g.op('Add', [x, maskInput]) : disabled.length ? g.op('Add', [x, g.constFloat(mask, [E])]) : x)
  const scores = router.scoring === 'softmax' ? g.op('Softmax', [masked(logits)], { axis: -1 }) : g.op('Sigmoid', [logits])
  if (router.scoring === 'softmax' && router.nGroup === 1) {
    const [w, i] = g.opN('TopK', [scores, g.constInt([topK])], 2, { axis: -1, largest: 1, sorted: 1 })
    return [w, i, scores]
  }
  let choice = router.correctionBias ? g.op('Add', [scores, weights.float32(weights.ckpt.names.layers[layer.index].correctionBias!, g)]) : scores
  if (router.nGroup > 1) {
    const G = router.nGroup, S = E / G
    const perGroup = g.op('Reshape', [masked(choice), g.constInt([-1, G, S])])
    let groupScore: string
    if (router.topkMethod === 'noaux_tc' && S >= 2) {
      // Sum of the group's top-2; a group left with one expert scores that one, an empty group -inf.
      const [best, second] = g.opN('Split', [g.opN('TopK', [perGroup, g.constInt([2])], 2, { axis: -1, largest: 1, sorted: 1 })[0], g.constInt([1, 1])], 2, { axis: -1 })
      const secondOr0 = g.op('Where', [g.op('IsInf', [second]), g.scalarFloat(0), second])
      groupScore = g.op('Reshape', [g.op('Add', [best, secondOr0]), g.constInt([-1, G])])
    } else {
      groupScore = g.op('ReduceMax', [perGroup, g.constInt([-1])], { keepdims: 0 })
    }
    const [, groupIdx] = g.opN('TopK', [groupScore, g.constInt([router.topkGroup])], 2, { axis: -1, largest: 1, sorted: 1 })
    const chosen = g.op('Equal', [g.op('Unsqueeze', [groupIdx, g.constInt([2])]), g.constInt(Array.from({ length: G }, (_, i) => i))]) // [N, kg, G]
    const groupKept = g.op('ReduceMax', [g.op('Cast', [chosen], { to: 1 }), g.constInt([1])], { keepdims: 0 }) // [N, G]
    const expertKept = g.op('Gather', [groupKept, g.constInt(Array.from({ length: E }, (_, e) => Math.floor(e / S)))], { axis: 1 }) // [N, E]
    choice = g.op('Where', [g.op('Greater', [expertKept, g.scalarFloat(0)]), choice, g.scalarFloat(0)])
  }
  const [, chosen] = g.opN('TopK', [masked(choice), g.constInt([topK])], 2, { axis: -1, largest: 1, sorted: 1 })
  // Weights are the scores of the chosen experts (never the correction bias), ordered by weight so
  // that "the second expert" (NAEE) means the lighter one as it does on softmax routers.
  const [topW, order] = g.opN('TopK', [g.op('GatherElements', [scores, chosen], { axis: 1 }), g.constInt([topK])], 2, { axis: -1, largest: 1, sorted: 1 })
  return [topW, g.op('GatherElements', [chosen, order], { axis: 1 }), scores]
}

function swigluRows(g: GraphBuilder, weights: ComputeWeights, names: ExpertNames, h: string, rows: string, keepNeurons: number, ffn: number, down = true): { hidden: string; y: string } {
  const xs = g.op('Gather', [h, rows], { axis: 0 })
  const act = silu(g, linear(g, xs, weights.float(names.gate, g)))
  let hidden = g.op('Mul', [act, linear(g, xs, weights.float(names.up, g))])
  if (keepNeurons) hidden = neuronTopK(g, weights.precision, act, hidden, keepNeurons, ffn)
  return { hidden, y: down ? linear(g, hidden, weights.float(names.down, g)) : '' }
}

/** A value an expert body returns: `value` inside the body, `name` outside (the If's output). */
interface BodyOutput { name: string; value: string; type: ElemType; dims: (string | number)[] }

/**
 * Declares the calibration output `name` and returns the name its value must get in the builder that
 * computes it: `name` itself in the main graph; inside a layer body a fresh name, which the layer's If
 * returns as `name` (a body cannot give a value the name of a graph output, which lives outside it).
 */
type Report = (name: string, type: ElemType, dims: (string | number)[]) => string

/** An expert body's output `value` that becomes the calibration output `name` (through `report`). */
function reportedBy(report: Report, name: string, value: string, type: ElemType, dims: (string | number)[]): BodyOutput {
  return { name: report(name, type, dims), value, type, dims }
}

/**
 * Adds If(always) running `body` and returning its outputs under their outer names. The else branch
 * (never taken) passes `passThrough` on for the leading outputs and returns empty tensors for the rest.
 */
function ifBody(g: GraphBuilder, always: string, body: GraphBuilder, outputs: BodyOutput[], passThrough: string[]): void {
  const skip = g.subgraph(`${body.name}_skip`)
  const elseOutputs = outputs.map((o, i) => {
    const source = i < passThrough.length ? passThrough[i]!
      : o.type === 'int64' ? g.constInt([], [0]) : g.constFloat([], [0, ...o.dims.slice(1).map(x => (typeof x === 'number' ? x : 0))])
    return { name: skip.op('Identity', [source]), type: o.type, dims: o.dims }
  })
  const thenBranch = body.toGraph(outputs.map(o => ({ name: o.value, type: o.type, dims: o.dims })))
  g.opN('If', [always], outputs.length, { then_branch: thenBranch, else_branch: skip.toGraph(elseOutputs) }, outputs.map(o => o.name))
}

/**
 * Keeps, per token, the `keep` neurons with the largest |act(W_gate x)| and zeroes the rest.
 * The per-row threshold is the keep-th largest magnitude, found by an unsorted TopK over whichever
 * side is smaller (the keep largest, or the F - keep + 1 smallest); neurons at or above it survive.
 * Only an exact tie of two non-zero magnitudes at the threshold could keep an extra neuron (zero
 * activations contribute nothing either way).
 */
function neuronTopK(g: GraphBuilder, p: Precision, act: string, hidden: string, keep: number, ffn: number): string {
  const mag = g.op('Abs', [act])
  // onnxruntime's CPU TopK dies with SIGFPE on zero rows (an expert no token chose), so one dummy
  // row is appended before it and dropped after.
  const padded = g.op('Concat', [mag, p.constant(g, new Float32Array(ffn), [1, ffn])], { axis: 0 })
  const fromTop = keep <= ffn - keep + 1
  const k = fromTop ? keep : ffn - keep + 1
  const [values] = g.opN('TopK', [padded, g.constInt([k])], 2, { axis: 1, largest: fromTop ? 1 : 0, sorted: 0 })
  const edge = g.op(fromTop ? 'ReduceMin' : 'ReduceMax', [values, g.constInt([1])], { keepdims: 1 })
  const threshold = g.op('Slice', [edge, g.constInt([0]), g.constInt([-1]), g.constInt([0])])
  return g.op('Where', [g.op('GreaterOrEqual', [mag, threshold]), hidden, p.scalar(g, 0)])
}
