// Writes tiny random MoE checkpoints of all four families in HuggingFace format, with tensor
// names and config keys of the published Hub checkpoints. Deterministic for a given seed.
import fs from 'node:fs'
import path from 'node:path'
import { encodeFromFloat32, decodeToFloat32, writeSafetensors, type DType, type TensorToWrite } from '../../src/model/safetensors.ts'
import { mulberry32, normal } from '../../src/util/rng.ts'
import { tokenizerJson, trainByteLevelBpe } from '../../tools/tokenizer/train-bpe.ts'

export type TinyFamily = 'mixtral' | 'olmoe' | 'qwen2_moe' | 'qwen3_moe'

export interface TinyOptions {
  family: TinyFamily
  dtype?: DType
  seed?: number
  hidden?: number
  layers?: number
  heads?: number
  kvHeads?: number
  /** Explicit head_dim (Mixtral / Qwen3-MoE only). */
  headDim?: number
  experts?: number
  topK?: number
  ffn?: number
  vocab?: number
  tie?: boolean
  /** Split tensors over this many shards with model.safetensors.index.json. */
  shards?: number
  normTopK?: boolean
  clipQkv?: number | null
  sharedFfn?: number
  mlpOnlyLayers?: number[]
  decoderSparseStep?: number
  denseFfn?: number
  ropeTheta?: number
}

export interface TinyModel {
  dir: string
  config: Record<string, unknown>
  /** Every tensor as the engine will see it (already rounded to the stored dtype). */
  tensors: Map<string, { shape: number[]; data: Float32Array }>
}

const TOKENIZER_TEXT = 'The quick brown fox jumps over the lazy dog. A tiny model is a model all the same; the tests love it. '

let cachedTokenizer: string | undefined
export function tinyTokenizerJson(): string {
  return (cachedTokenizer ??= (() => {
    const { symbols, merges } = trainByteLevelBpe([TOKENIZER_TEXT.repeat(4)], 300)
    return JSON.stringify(tokenizerJson(symbols, merges))
  })())
}

export function writeTinyCheckpoint(dir: string, o: TinyOptions): TinyModel {
  const dtype = o.dtype ?? 'F32'
  const rand = normal(mulberry32(o.seed ?? 1))
  const hidden = o.hidden ?? 32
  const heads = o.heads ?? 4
  const kvHeads = o.kvHeads ?? 2
  const explicitHd = o.family === 'mixtral' || o.family === 'qwen3_moe'
  const hd = explicitHd && o.headDim ? o.headDim : hidden / heads
  const layers = o.layers ?? 2
  const E = o.experts ?? 4
  const topK = o.topK ?? 2
  const ffn = o.ffn ?? 24
  const vocab = o.vocab ?? 320
  const tie = o.tie ?? false
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>()
  const put = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1)
    const raw = new Float32Array(n)
    for (let i = 0; i < n; i++) raw[i] = offset + scale * rand()
    // Round through the stored dtype so the reference sees exactly what the engine reads.
    const data = decodeToFloat32(encodeFromFloat32(raw, dtype), dtype)
    tensors.set(name, { shape, data })
  }
  const lin = (name: string, out: number, inp: number, bias = false) => {
    put(`${name}.weight`, [out, inp], 1 / Math.sqrt(inp))
    if (bias) put(`${name}.bias`, [out], 0.1)
  }
  const mlp = (prefix: string, f: number, names: [string, string, string]) => {
    lin(`${prefix}.${names[0]}`, f, hidden)
    lin(`${prefix}.${names[1]}`, f, hidden)
    lin(`${prefix}.${names[2]}`, hidden, f)
  }

  put('model.embed_tokens.weight', [vocab, hidden], 1)
  put('model.norm.weight', [hidden], 0.1, 1)
  if (!tie) put('lm_head.weight', [vocab, hidden], 1 / Math.sqrt(hidden))
  const qwen = o.family === 'qwen2_moe' || o.family === 'qwen3_moe'
  const step = o.decoderSparseStep ?? 1
  const mlpOnly = o.mlpOnlyLayers ?? []
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`
    put(`${p}.input_layernorm.weight`, [hidden], 0.1, 1)
    put(`${p}.post_attention_layernorm.weight`, [hidden], 0.1, 1)
    const qkvBias = o.family === 'qwen2_moe'
    lin(`${p}.self_attn.q_proj`, heads * hd, hidden, qkvBias)
    lin(`${p}.self_attn.k_proj`, kvHeads * hd, hidden, qkvBias)
    lin(`${p}.self_attn.v_proj`, kvHeads * hd, hidden, qkvBias)
    lin(`${p}.self_attn.o_proj`, hidden, heads * hd)
    if (o.family === 'olmoe') {
      put(`${p}.self_attn.q_norm.weight`, [heads * hd], 0.1, 1)
      put(`${p}.self_attn.k_norm.weight`, [kvHeads * hd], 0.1, 1)
    }
    if (o.family === 'qwen3_moe') {
      put(`${p}.self_attn.q_norm.weight`, [hd], 0.1, 1)
      put(`${p}.self_attn.k_norm.weight`, [hd], 0.1, 1)
    }
    const sparse = !qwen || (!mlpOnly.includes(l) && (l + 1) % step === 0)
    if (!sparse) {
      mlp(`${p}.mlp`, o.denseFfn ?? 40, ['gate_proj', 'up_proj', 'down_proj'])
      continue
    }
    if (o.family === 'mixtral') {
      put(`${p}.block_sparse_moe.gate.weight`, [E, hidden], 0.5)
      for (let e = 0; e < E; e++) mlp(`${p}.block_sparse_moe.experts.${e}`, ffn, ['w1', 'w3', 'w2'])
    } else {
      put(`${p}.mlp.gate.weight`, [E, hidden], 0.5)
      for (let e = 0; e < E; e++) mlp(`${p}.mlp.experts.${e}`, ffn, ['gate_proj', 'up_proj', 'down_proj'])
      if (o.family === 'qwen2_moe' && (o.sharedFfn ?? 16) > 0) {
        mlp(`${p}.mlp.shared_expert`, o.sharedFfn ?? 16, ['gate_proj', 'up_proj', 'down_proj'])
        put(`${p}.mlp.shared_expert_gate.weight`, [1, hidden], 0.3)
      }
    }
  }

  const base = { vocab_size: vocab, hidden_size: hidden, num_hidden_layers: layers, num_attention_heads: heads,
    num_key_value_heads: kvHeads, hidden_act: 'silu', max_position_embeddings: 512, rms_norm_eps: 1e-6,
    rope_theta: o.ropeTheta ?? 10000, tie_word_embeddings: tie, bos_token_id: 0, eos_token_id: 0, torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype] }
  let config: Record<string, unknown>
  switch (o.family) {
    case 'mixtral':
      config = { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', ...base, intermediate_size: ffn, num_local_experts: E,
        num_experts_per_tok: topK, sliding_window: null, ...(o.headDim ? { head_dim: o.headDim } : {}) }
      break
    case 'olmoe':
      config = { architectures: ['OlmoeForCausalLM'], model_type: 'olmoe', ...base, intermediate_size: ffn, num_experts: E,
        num_experts_per_tok: topK, norm_topk_prob: o.normTopK ?? false, clip_qkv: o.clipQkv ?? null, attention_bias: false }
      break
    case 'qwen2_moe':
      config = { architectures: ['Qwen2MoeForCausalLM'], model_type: 'qwen2_moe', ...base, intermediate_size: o.denseFfn ?? 40,
        moe_intermediate_size: ffn, shared_expert_intermediate_size: o.sharedFfn ?? 16, num_experts: E, num_experts_per_tok: topK,
        norm_topk_prob: o.normTopK ?? false, decoder_sparse_step: step, mlp_only_layers: mlpOnly, use_sliding_window: false, sliding_window: 4096 }
      break
    case 'qwen3_moe':
      config = { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', ...base, intermediate_size: o.denseFfn ?? 40,
        moe_intermediate_size: ffn, num_experts: E, num_experts_per_tok: topK, norm_topk_prob: o.normTopK ?? true,
        decoder_sparse_step: step, mlp_only_layers: mlpOnly, head_dim: hd, attention_bias: false, use_sliding_window: false, sliding_window: null }
      break
  }

  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2))
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), tinyTokenizerJson())
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' }))
  const toWrite: Record<string, TensorToWrite> = {}
  for (const [name, t] of tensors) toWrite[name] = { dtype, shape: t.shape, data: encodeFromFloat32(t.data, dtype) }
  const shards = o.shards ?? 1
  if (shards <= 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), toWrite)
  } else {
    const names = Object.keys(toWrite).sort()
    const weightMap: Record<string, string> = {}
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`
      const part: Record<string, TensorToWrite> = {}
      names.filter((_, i) => i % shards === s).forEach(n => { part[n] = toWrite[n]; weightMap[n] = file })
      writeSafetensors(path.join(dir, file), part)
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2))
  }
  return { dir, config, tensors }
}
