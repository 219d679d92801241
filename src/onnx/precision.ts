// The compute dtype of the scoring graph and the float32 islands it keeps (issue 10 §6).
//
// A half-precision graph runs the way transformers runs these models in bfloat16/float16: activations,
// projections, experts and attention matmuls in the compute dtype, and float32 exactly where the HF
// modelling code upcasts. Every rule below cites the code it follows (transformers main, files
// src/transformers/models/<family>/modeling_<family>.py for mixtral, qwen2_moe, qwen3_moe, olmoe,
// deepseek_v2, deepseek_v3; they agree on all rules unless a family is named):
//
// - RMSNorm (every *RMSNorm.forward): `hidden_states.to(torch.float32)`, variance and rsqrt in float32,
//   then `self.weight * hidden_states.to(input_dtype)`: the product with the weight is in the compute dtype.
//   (In float16 the square alone overflows for |x| > 256, which the residual stream reaches.)
// - Rotary (*RotaryEmbedding.forward): cos/sin computed in float32 under autocast(enabled=False) and
//   returned `.to(dtype=x.dtype)`; apply_rotary_pos_emb then runs in the compute dtype. DeepSeek-V2's
//   complex form (apply_rotary_emb: `xq.float()` times the float32 freqs_cis, `.type_as(xq)`) rotates in
//   float32: rotaryInFloat32.
// - Attention softmax (eager_attention_forward): `softmax(attn_weights, dim=-1, dtype=torch.float32)
//   .to(query.dtype)`; the score matmul and the value matmul are in the compute dtype. (SDPA / flash
//   kernels also accumulate the softmax in float32.) The additive mask is applied in float32 here.
// - Router: the router logits come from the gate Linear in the compute dtype (Mixtral, Qwen2/3-MoE,
//   OLMoE: `router_logits = self.gate(hidden_states)`), then `F.softmax(router_logits, dim=1,
//   dtype=torch.float)`, top-k and renormalisation in float32. DeepSeek-V2 (DeepseekV2Moe.forward) and
//   V3 (DeepseekV3TopkRouter.forward) compute the router Linear itself in float32
//   (`F.linear(hidden_states.type(torch.float32), self.weight.type(torch.float32))`), then softmax /
//   sigmoid, group selection, renormalisation and routed_scaling_factor in float32: routerInFloat32.
// - Expert sum: the gates stay float32 and each expert's output times its gate is summed in float32,
//   then rounded once to the compute dtype. This is DeepseekV3MoE.moe (`torch.zeros_like(hidden_states,
//   dtype=topk_weights.dtype)`, float32 index_add_, `.type(hidden_states.dtype)`); Mixtral / Qwen /
//   OLMoE / DeepSeek-V2 round the gates and sum in the compute dtype, so the harness is at least as
//   precise there. It is also forced: onnxruntime's CPU ScatterND has no float16 `add` reduction
//   ("MLFloat16 data type is not supported with ScatterND opset 16 when reduction is 'add'", measured on
//   onnxruntime-node 1.30) and WGSL has no float16 atomics. Shared experts are added in the compute dtype.
// - Log-softmax: the logits come from lm_head in the compute dtype (MixtralForCausalLM.forward: "do not
//   upcast them to float"); the graph takes LogSoftmax in float32. lm-eval's HFLM._loglikelihood_tokens
//   (lm_eval/models/huggingface.py) calls F.log_softmax on the logits in their own dtype, so in bfloat16
//   its log-probabilities are rounded to 8 significant bits; the harness keeps float32 there on purpose
//   (a score is a sum of many log-probabilities).
//
// Graph inputs and outputs stay float32 whatever the compute dtype (feeds, calibration outputs,
// `hidden_in` / `hidden_out`), so the engine and calibration code never see a half-precision tensor.
//
// float16 and bfloat16: WebGPU computes float16, not bfloat16, so float16 is the GPU default and
// bfloat16 checkpoint weights are rounded to float16 (round to nearest even). That is exact for every
// bfloat16 value whose magnitude lies in float16's normal range [2^-14, 65504] (bfloat16 has 8
// significant bits, float16 11); smaller magnitudes become float16 subnormals (fewer significant bits)
// or 0 below 2^-25, and magnitudes above 65504 become ±Inf. A checkpoint weight beyond that range
// refuses a float16 graph before it is built (graphStore.ts float16Overflows, engine/graphSession.ts):
// onnxruntime's CPU provider would compute it in float32 and hide what a GPU would do. Activations
// overflow the same way; a graph output that is not finite is reported as NUMERIC_FAILURE (engine/graphSession.ts) with the fix
// (--precision float32, or bfloat16 where the execution provider has the kernels). bfloat16 is kept as
// a choice for execution providers that prefer it (onnxruntime's CUDA provider).
import { floatToBf16, floatToHalf } from '../util/float16.ts'
import type { ModelSpec } from '../model/modelSpec.ts'
import type { ElemType, GraphBuilder } from './graphBuilder.ts'

export type ComputePrecision = 'float32' | 'float16' | 'bfloat16'
export const PRECISIONS: readonly ComputePrecision[] = ['float32', 'float16', 'bfloat16']
/** float16's largest finite value (IEEE 754 binary16). */
export const FLOAT16_MAX = 65504

/** ONNX TensorProto.DataType codes, for Cast's `to`. */
const ONNX_TYPE: Record<ComputePrecision, number> = { float32: 1, float16: 10, bfloat16: 16 }

/**
 * The compute dtype of one graph build and its float32 islands. In a float32 graph every method is
 * the identity (no node is added), so a float32 graph is the graph built before precision existed.
 */
export class Precision {
  private consts = new Map<string, string>()
  constructor(readonly compute: ComputePrecision = 'float32') {}

  get isHalf(): boolean {
    return this.compute !== 'float32'
  }

  get elemType(): ElemType {
    return this.compute
  }

  /** `x` (compute dtype) as float32: the entry of a float32 island. */
  toFloat32(g: GraphBuilder, x: string): string {
    return this.isHalf ? g.op('Cast', [x], { to: ONNX_TYPE.float32 }) : x
  }

  /** `x` (float32) in the compute dtype: the exit of a float32 island (round to nearest even). */
  toCompute(g: GraphBuilder, x: string): string {
    return this.isHalf ? g.op('Cast', [x], { to: ONNX_TYPE[this.compute] }) : x
  }

  /** A constant in the compute dtype (values rounded to it), shared by every use in the graph. */
  constant(g: GraphBuilder, values: readonly number[] | Float32Array, dims: number[] = [values.length]): string {
    if (!this.isHalf) return g.constFloat(values, dims)
    const key = `${dims}:${Array.from(values)}`
    const hit = this.consts.get(key)
    if (hit) return hit
    const round = this.compute === 'float16' ? floatToHalf : floatToBf16
    const bits = Uint16Array.from(Array.from(values), v => round(v))
    const name = g.rawInitializer(g.fresh(`const_${this.compute}`), this.compute, dims, new Uint8Array(bits.buffer))
    this.consts.set(key, name)
    return name
  }

  scalar(g: GraphBuilder, v: number): string {
    return this.constant(g, [v], [])
  }

  /** Whether the family computes its router Linear in float32 (DeepSeek-V2/V3; see the header). */
  routerInFloat32(spec: ModelSpec): boolean {
    return this.isHalf && (spec.family === 'deepseek_v2' || spec.family === 'deepseek_v3')
  }

  /** Whether rotary embeddings are applied in float32 (DeepSeek-V2's complex form; see the header). */
  rotaryInFloat32(spec: ModelSpec): boolean {
    return this.isHalf && spec.family === 'deepseek_v2'
  }
}
