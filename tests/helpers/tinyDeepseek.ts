// Writes tiny random DeepSeek-V2 / DeepSeek-V3 checkpoints in HuggingFace format: config.json keys of
// the Hub checkpoints (deepseek-ai/DeepSeek-V2-Lite, deepseek-ai/DeepSeek-V3; the same keys that
// transformers' DeepseekV2Config / DeepseekV3Config read), Hub tensor names, deterministic per seed.
// With dtype 'F8_E4M3' the linear layers are stored the way DeepSeek-V3 ships them: F8_E4M3 weights
// plus an F32 `weight_scale_inv` per 128x128 block, and a `quantization_config` in config.json.
import fs from 'node:fs'
import path from 'node:path'
import { decodeToFloat32, encodeFromFloat32 } from '../../src/model/safetensors.ts'
import { mulberry32, normal } from '../../src/util/rng.ts'
import { writeTensors, type RawTensor } from './rawSafetensors.ts'
import { tinyTokenizerJson, type TinyModel } from './tinyCheckpoint.ts'

export type DeepseekDType = 'F32' | 'F16' | 'BF16' | 'F8_E4M3'

/** rope_scaling of type yarn, as DeepSeek's config.json carries it. */
export interface YarnScaling {
  type?: 'yarn'
  rope_type?: 'yarn'
  factor: number
  original_max_position_embeddings: number
  beta_fast?: number
  beta_slow?: number
  mscale?: number
  mscale_all_dim?: number
}

export interface TinyDeepseekOptions {
  version: 'v2' | 'v3'
  dtype?: DeepseekDType
  seed?: number
  hidden?: number
  layers?: number
  heads?: number
  /** null: a single q_proj (DeepSeek-V2-Lite); a number: q_a_proj → q_a_layernorm → q_b_proj. */
  qLoraRank?: number | null
  kvLoraRank?: number
  qkNopeHeadDim?: number
  qkRopeHeadDim?: number
  vHeadDim?: number
  /** n_routed_experts */
  experts?: number
  /** num_experts_per_tok */
  topK?: number
  /** moe_intermediate_size */
  ffn?: number
  /** intermediate_size (dense layers) */
  denseFfn?: number
  /** n_shared_experts; 0 or null writes `null` and no shared-expert tensors. */
  nSharedExperts?: number | null
  firstKDenseReplace?: number
  moeLayerFreq?: number
  nGroup?: number
  topkGroup?: number
  topkMethod?: 'greedy' | 'group_limited_greedy' | 'noaux_tc'
  routedScalingFactor?: number
  normTopK?: boolean
  ropeScaling?: YarnScaling | null
  ropeTheta?: number
  /** Written as rope_interleave only when given (transformers' DeepseekV3Config default is true). */
  ropeInterleave?: boolean
  tie?: boolean
  /** Split tensors over this many shards with model.safetensors.index.json. */
  shards?: number
  vocab?: number
  maxPositionEmbeddings?: number
  /**
   * transformers v5 files: experts stored fused as `mlp.experts.gate_up_proj` [E, 2·ffn, hidden] (gate
   * rows first) and `mlp.experts.down_proj` [E, hidden, ffn] (MixtralExperts, which DeepseekV2Experts /
   * DeepseekV3NaiveMoe extend); the random draws are the same as per-expert, so both layouts of one seed
   * are one model. Not with F8_E4M3.
   */
  fusedExperts?: boolean
  /** 'v5': rope settings written as `rope_parameters` (rope_type, rope_theta, yarn fields), no rope_theta / rope_scaling. */
  configForm?: 'v4' | 'v5'
  /** V3 only: num_nextn_predict_layers, written as DeepSeek-V3 ships its MTP layer (model.layers.<layers>.*). */
  nextnLayers?: number
  /** rms_norm_eps (decoder norms only: the latent q_a/kv_a norms keep their module default 1e-6). */
  rmsNormEps?: number
}

export interface TinyDeepseekModel extends TinyModel {
  /** Names of the used tensors stored as F8_E4M3 (each with a `<module>.weight_scale_inv`). */
  fp8Weights: string[]
  /** Tensors in the files that the model does not use (the MTP layers), not in `tensors`. */
  unusedTensors: string[]
}

/** DeepSeek-V3's FP8 block size ([out, in]), from its config.json `quantization_config.weight_block_size`. */
export const FP8_BLOCK = 128

/** Largest finite float8 e4m3fn value (S.1111.110 = 1.75 · 2^8). */
const E4M3_MAX = 448

/** Nearest float8 e4m3fn byte to x (round half to even, saturating at ±448); x must be finite. */
export function encodeE4M3(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0
  const a = Math.min(Math.abs(x), E4M3_MAX)
  if (a === 0) return sign
  // Subnormals: exponent field 0, value m/8 · 2^-6, i.e. a multiple of 2^-9.
  if (a < 2 ** -6) {
    const m = roundHalfEven(a / 2 ** -9)
    return sign | m // m may round up to 8 = the smallest normal (exponent 1, mantissa 0): same bits
  }
  let e = Math.floor(Math.log2(a))
  if (2 ** e > a) e-- // guard log2 rounding
  if (2 ** (e + 1) <= a) e++
  let m = roundHalfEven((a / 2 ** e - 1) * 8)
  if (m === 8) { m = 0; e++ }
  return sign | ((e + 7) << 3) | m
}

/** Value of a float8 e4m3fn byte (0x7f / 0xff are NaN). */
export function decodeE4M3(b: number): number {
  const sign = b & 0x80 ? -1 : 1
  const e = (b >> 3) & 0xf
  const m = b & 7
  if (e === 15 && m === 7) return NaN
  return e === 0 ? sign * (m / 8) * 2 ** -6 : sign * (1 + m / 8) * 2 ** (e - 7)
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v)
  const r = v - f
  if (r > 0.5) return f + 1
  if (r < 0.5) return f
  return f % 2 === 0 ? f : f + 1
}

type Stored = RawTensor

/**
 * Writes the checkpoint into `dir` and returns it with every tensor as the engine will see it:
 * rounded through the stored dtype, and for FP8 weights dequantized as fp8 × weight_scale_inv of
 * its block, computed in float32 (DeepSeek-V3 inference/kernel.py weight_dequant).
 */
export function writeTinyDeepseek(dir: string, o: TinyDeepseekOptions): TinyDeepseekModel {
  const v3 = o.version === 'v3'
  const dtype = o.dtype ?? 'F32'
  const fp8 = dtype === 'F8_E4M3'
  // Non-linear tensors of DeepSeek-V3's FP8 release are BF16 (embeddings, norms, router, lm_head).
  const plainDtype: 'F32' | 'F16' | 'BF16' = fp8 ? 'BF16' : dtype
  const rand = normal(mulberry32(o.seed ?? 1))
  const hidden = o.hidden ?? 32
  const layers = o.layers ?? 2
  const heads = o.heads ?? 4
  const qLoraRank = o.qLoraRank === undefined ? (v3 ? 24 : null) : o.qLoraRank
  const kvLoraRank = o.kvLoraRank ?? 16
  const nope = o.qkNopeHeadDim ?? 8
  const rope = o.qkRopeHeadDim ?? 4
  const vHd = o.vHeadDim ?? 8
  const E = o.experts ?? 8
  const topK = o.topK ?? 2
  const ffn = o.ffn ?? 12
  const denseFfn = o.denseFfn ?? 40
  const nShared = o.nSharedExperts === undefined ? 1 : o.nSharedExperts
  const firstK = o.firstKDenseReplace ?? 1
  const freq = o.moeLayerFreq ?? 1
  const topkMethod = o.topkMethod ?? (v3 ? 'noaux_tc' : 'greedy')
  const nGroup = o.nGroup ?? 1
  const topkGroup = o.topkGroup ?? 1
  const vocab = o.vocab ?? 320
  const tie = o.tie ?? false
  const qkHd = nope + rope

  const tensors = new Map<string, { shape: number[]; data: Float32Array }>()
  const stored = new Map<string, Stored>()
  const fp8Weights: string[] = []
  const sample = (shape: number[], scale: number, offset: number): Float32Array => {
    const n = shape.reduce((a, b) => a * b, 1)
    const raw = new Float32Array(n)
    for (let i = 0; i < n; i++) raw[i] = offset + scale * rand()
    return raw
  }
  const putPlain = (name: string, shape: number[], raw: Float32Array, dt: 'F32' | 'F16' | 'BF16') => {
    const bytes = encodeFromFloat32(raw, dt)
    tensors.set(name, { shape, data: decodeToFloat32(bytes, dt) })
    stored.set(name, { dtype: dt, shape, bytes })
  }
  const put = (name: string, shape: number[], scale: number, offset = 0) => putPlain(name, shape, sample(shape, scale, offset), plainDtype)
  const putFp8 = (name: string, shape: number[], raw: Float32Array) => {
    const [out, inp] = shape
    const bo = Math.ceil(out / FP8_BLOCK), bi = Math.ceil(inp / FP8_BLOCK)
    const scaleInv = new Float32Array(bo * bi)
    for (let r = 0; r < bo; r++) for (let c = 0; c < bi; c++) {
      let amax = 0
      for (let o2 = r * FP8_BLOCK; o2 < Math.min(out, (r + 1) * FP8_BLOCK); o2++)
        for (let i = c * FP8_BLOCK; i < Math.min(inp, (c + 1) * FP8_BLOCK); i++) amax = Math.max(amax, Math.abs(raw[o2 * inp + i]))
      scaleInv[r * bi + c] = Math.fround(amax / E4M3_MAX) || 1
    }
    const q = new Uint8Array(out * inp)
    const deq = new Float32Array(out * inp)
    for (let o2 = 0; o2 < out; o2++) for (let i = 0; i < inp; i++) {
      const s = scaleInv[Math.floor(o2 / FP8_BLOCK) * bi + Math.floor(i / FP8_BLOCK)]
      const b = encodeE4M3(raw[o2 * inp + i] / s)
      q[o2 * inp + i] = b
      deq[o2 * inp + i] = Math.fround(decodeE4M3(b) * s)
    }
    tensors.set(name, { shape, data: deq })
    stored.set(name, { dtype: 'F8_E4M3', shape, bytes: q })
    const scaleName = name.replace(/\.weight$/, '.weight_scale_inv')
    stored.set(scaleName, { dtype: 'F32', shape: [bo, bi], bytes: encodeFromFloat32(scaleInv, 'F32') })
    fp8Weights.push(name)
  }
  // Every nn.Linear inside the decoder layers is FP8 in DeepSeek-V3's release; the router
  // (DeepseekV3TopkRouter is not an nn.Linear), embeddings, norms and lm_head are not.
  const lin = (name: string, out: number, inp: number) => {
    const shape = [out, inp]
    const raw = sample(shape, 1 / Math.sqrt(inp), 0)
    if (fp8) putFp8(`${name}.weight`, shape, raw)
    else putPlain(`${name}.weight`, shape, raw, plainDtype)
  }
  const mlp = (prefix: string, f: number) => {
    lin(`${prefix}.gate_proj`, f, hidden)
    lin(`${prefix}.up_proj`, f, hidden)
    lin(`${prefix}.down_proj`, hidden, f)
  }

  put('model.embed_tokens.weight', [vocab, hidden], 1)
  put('model.norm.weight', [hidden], 0.1, 1)
  if (!tie) put('lm_head.weight', [vocab, hidden], 1 / Math.sqrt(hidden))
  const nextn = v3 ? o.nextnLayers ?? 0 : 0
  const mainNames = new Set<string>()
  for (let l = 0; l < layers + nextn; l++) {
    const p = `model.layers.${l}`
    if (l === layers) for (const n of tensors.keys()) mainNames.add(n)
    if (l >= layers) {
      // DeepSeek-V3's multi-token-prediction module (num_nextn_predict_layers): one more decoder
      // layer plus its own embedding/norm/projection/head, which transformers skips on load
      // (_keys_to_ignore_on_load_unexpected = model.layers.61.*) and inference never runs.
      put(`${p}.embed_tokens.weight`, [vocab, hidden], 1)
      put(`${p}.enorm.weight`, [hidden], 0.1, 1)
      put(`${p}.hnorm.weight`, [hidden], 0.1, 1)
      put(`${p}.eh_proj.weight`, [hidden, 2 * hidden], 1 / Math.sqrt(2 * hidden))
      put(`${p}.shared_head.norm.weight`, [hidden], 0.1, 1)
      put(`${p}.shared_head.head.weight`, [vocab, hidden], 1 / Math.sqrt(hidden))
    }
    put(`${p}.input_layernorm.weight`, [hidden], 0.1, 1)
    put(`${p}.post_attention_layernorm.weight`, [hidden], 0.1, 1)
    if (qLoraRank === null) {
      lin(`${p}.self_attn.q_proj`, heads * qkHd, hidden)
    } else {
      lin(`${p}.self_attn.q_a_proj`, qLoraRank, hidden)
      put(`${p}.self_attn.q_a_layernorm.weight`, [qLoraRank], 0.1, 1)
      lin(`${p}.self_attn.q_b_proj`, heads * qkHd, qLoraRank)
    }
    lin(`${p}.self_attn.kv_a_proj_with_mqa`, kvLoraRank + rope, hidden)
    put(`${p}.self_attn.kv_a_layernorm.weight`, [kvLoraRank], 0.1, 1)
    lin(`${p}.self_attn.kv_b_proj`, heads * (nope + vHd), kvLoraRank)
    lin(`${p}.self_attn.o_proj`, hidden, heads * vHd)
    // The Hub modelling code's rule (modeling_deepseek.py DeepseekV2/V3DecoderLayer).
    const moe = E > 0 && l >= firstK && l % freq === 0
    if (!moe) {
      mlp(`${p}.mlp`, denseFfn)
      continue
    }
    put(`${p}.mlp.gate.weight`, [E, hidden], 1 / Math.sqrt(hidden))
    if (v3) {
      // DeepSeek-V3 ships the correction bias in F32; transformers' save_pretrained writes the model dtype.
      const dt = fp8 ? 'F32' : plainDtype
      // Non-negative, so sigmoid + bias stays positive and transformers' 0.0 fill of the
      // unselected groups never competes with a real candidate (no ties left to torch.topk).
      putPlain(`${p}.mlp.gate.e_score_correction_bias`, [E], sample([E], 0.1, 0).map(Math.abs), dt)
    }
    for (let e = 0; e < E; e++) mlp(`${p}.mlp.experts.${e}`, ffn)
    if (nShared) mlp(`${p}.mlp.shared_experts`, ffn * nShared)
  }

  // The MTP tensors are in the files only: the model never reads them.
  const unusedTensors = nextn ? [...stored.keys()].filter(n => !mainNames.has(n) && !n.endsWith('.weight_scale_inv') && tensors.has(n)).sort() : []
  for (const n of unusedTensors) tensors.delete(n)

  if (o.fusedExperts) {
    if (fp8) throw new Error('writeTinyDeepseek: fusedExperts with F8_E4M3 is not a layout anyone ships')
    for (let l = 0; l < layers + nextn; l++) {
      const p = `model.layers.${l}.mlp.experts`
      if (!stored.has(`${p}.0.gate_proj.weight`)) continue
      const parts = (names: string[]) => {
        const bytes = names.map(n => stored.get(n)!.bytes)
        names.forEach(n => stored.delete(n))
        return Buffer.concat(bytes.map(b => Buffer.from(b.buffer, b.byteOffset, b.byteLength)))
      }
      const gateUp = parts(Array.from({ length: E }, (_, e) => [`${p}.${e}.gate_proj.weight`, `${p}.${e}.up_proj.weight`]).flat())
      const down = parts(Array.from({ length: E }, (_, e) => `${p}.${e}.down_proj.weight`))
      stored.set(`${p}.gate_up_proj`, { dtype: plainDtype, shape: [E, 2 * ffn, hidden], bytes: new Uint8Array(gateUp) })
      stored.set(`${p}.down_proj`, { dtype: plainDtype, shape: [E, hidden, ffn], bytes: new Uint8Array(down) })
    }
  }

  const ropeScaling = o.ropeScaling ?? null
  const ropeConfig: Record<string, unknown> = o.configForm === 'v5'
    ? { rope_parameters: { ...(ropeScaling ? Object.fromEntries(Object.entries(ropeScaling).filter(([k]) => k !== 'type')) : {}), rope_type: ropeScaling ? 'yarn' : 'default', rope_theta: o.ropeTheta ?? 10000 } }
    : { rope_scaling: ropeScaling, rope_theta: o.ropeTheta ?? 10000 }
  const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', F8_E4M3: 'bfloat16' }[dtype]
  const config: Record<string, unknown> = {
    architectures: [v3 ? 'DeepseekV3ForCausalLM' : 'DeepseekV2ForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    aux_loss_alpha: 0.001,
    bos_token_id: 0,
    eos_token_id: 0,
    ep_size: 1,
    first_k_dense_replace: firstK,
    hidden_act: 'silu',
    hidden_size: hidden,
    initializer_range: 0.02,
    intermediate_size: denseFfn,
    kv_lora_rank: kvLoraRank,
    max_position_embeddings: o.maxPositionEmbeddings ?? 2048,
    model_type: v3 ? 'deepseek_v3' : 'deepseek_v2',
    moe_intermediate_size: ffn,
    moe_layer_freq: freq,
    n_group: nGroup,
    n_routed_experts: E,
    n_shared_experts: nShared || null,
    norm_topk_prob: o.normTopK ?? v3,
    num_attention_heads: heads,
    num_experts_per_tok: topK,
    num_hidden_layers: layers,
    num_key_value_heads: heads,
    ...(v3 ? { num_nextn_predict_layers: nextn } : {}),
    pretraining_tp: 1,
    q_lora_rank: qLoraRank,
    qk_nope_head_dim: nope,
    qk_rope_head_dim: rope,
    ...(fp8 ? { quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', weight_block_size: [FP8_BLOCK, FP8_BLOCK] } } : {}),
    rms_norm_eps: o.rmsNormEps ?? 1e-6,
    ...ropeConfig,
    ...(o.ropeInterleave !== undefined ? { rope_interleave: o.ropeInterleave } : {}),
    routed_scaling_factor: o.routedScalingFactor ?? (v3 ? 2.5 : 1.0),
    scoring_func: v3 ? 'sigmoid' : 'softmax',
    seq_aux: true,
    tie_word_embeddings: tie,
    topk_group: topkGroup,
    topk_method: topkMethod,
    torch_dtype: torchDtype,
    transformers_version: '4.46.3',
    use_cache: true,
    v_head_dim: vHd,
    vocab_size: vocab,
  }

  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2))
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), tinyTokenizerJson())
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' }))
  const names = [...stored.keys()].sort()
  const shards = o.shards ?? 1
  if (shards <= 1) {
    writeTensors(path.join(dir, 'model.safetensors'), new Map(names.map(n => [n, stored.get(n)!])))
  } else {
    const weightMap: Record<string, string> = {}
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`
      const part = names.filter((_, i) => i % shards === s)
      part.forEach(n => { weightMap[n] = file })
      writeTensors(path.join(dir, file), new Map(part.map(n => [n, stored.get(n)!])))
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2))
  }
  return { dir, config, tensors, fp8Weights: fp8Weights.filter(n => tensors.has(n)), unusedTensors }
}
