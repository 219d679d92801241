// Synthetic random checkpoints in the exact shapes of published MoE configs, shared by the benchmarks
// (bench/scale.bench.ts, bench/gpu.bench.ts): the configs key for key, their tiny-width form, every
// tensor with its Hub name, and a streaming BF16 writer.
import fs from 'node:fs'
import path from 'node:path'
import { mulberry32 } from '../src/util/rng.ts'

export type Config = Record<string, unknown>

/**
 * The published config.json of each model, key for key as on the Hugging Face Hub (values checked
 * against the Hub files as quoted by transformers' docs, Megatron/MaxText model configs and
 * third-party config dumps found with the code search). The benchmark overrides only
 * num_hidden_layers, and in part (a) the widths (tinyWidth below) - never routing settings.
 */
export const REAL: Record<string, { model: string; source: string; config: Config }> = {
  olmoe: {
    model: 'OLMoE-1B-7B-0924',
    source: 'https://huggingface.co/allenai/OLMoE-1B-7B-0924/blob/main/config.json',
    config: {
      architectures: ['OlmoeForCausalLM'], attention_bias: false, attention_dropout: 0.0, clip_qkv: null, eos_token_id: 50279,
      hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02, intermediate_size: 1024, max_position_embeddings: 4096,
      model_type: 'olmoe', norm_topk_prob: false, num_attention_heads: 16, num_experts: 64, num_experts_per_tok: 8,
      num_hidden_layers: 16, num_key_value_heads: 16, output_router_logits: false, pad_token_id: 1, rms_norm_eps: 1e-5,
      rope_scaling: null, rope_theta: 10000.0, router_aux_loss_coef: 0.01, tie_word_embeddings: false, torch_dtype: 'bfloat16',
      use_cache: true, vocab_size: 50304,
    },
  },
  qwen3: {
    model: 'Qwen3-30B-A3B',
    source: 'https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json',
    config: {
      architectures: ['Qwen3MoeForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643,
      decoder_sparse_step: 1, eos_token_id: 151645, head_dim: 128, hidden_act: 'silu', hidden_size: 2048,
      initializer_range: 0.02, intermediate_size: 6144, max_position_embeddings: 40960, max_window_layers: 48,
      mlp_only_layers: [], model_type: 'qwen3_moe', moe_intermediate_size: 768, norm_topk_prob: true,
      num_attention_heads: 32, num_experts: 128, num_experts_per_tok: 8, num_hidden_layers: 48, num_key_value_heads: 4,
      output_router_logits: false, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000.0, router_aux_loss_coef: 0.001,
      sliding_window: null, tie_word_embeddings: false, torch_dtype: 'bfloat16', use_cache: true, use_sliding_window: false,
      vocab_size: 151936,
    },
  },
  deepseek: {
    model: 'DeepSeek-V2-Lite',
    source: 'https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite/blob/main/config.json',
    config: {
      architectures: ['DeepseekV2ForCausalLM'], attention_bias: false, attention_dropout: 0.0, aux_loss_alpha: 0.001,
      bos_token_id: 100000, eos_token_id: 100001, first_k_dense_replace: 1, hidden_act: 'silu', hidden_size: 2048,
      initializer_range: 0.02, intermediate_size: 10944, kv_lora_rank: 512, max_position_embeddings: 163840,
      model_type: 'deepseek_v2', moe_intermediate_size: 1408, moe_layer_freq: 1, n_group: 1, n_routed_experts: 64,
      n_shared_experts: 2, norm_topk_prob: false, num_attention_heads: 16, num_experts_per_tok: 6, num_hidden_layers: 27,
      num_key_value_heads: 16, pretraining_tp: 1, q_lora_rank: null, qk_nope_head_dim: 128, qk_rope_head_dim: 64,
      rms_norm_eps: 1e-6,
      rope_scaling: { beta_fast: 32, beta_slow: 1, factor: 40, mscale: 0.707, mscale_all_dim: 0.707, original_max_position_embeddings: 4096, type: 'yarn' },
      rope_theta: 10000, routed_scaling_factor: 1.0, scoring_func: 'softmax', seq_aux: true, tie_word_embeddings: false,
      topk_group: 1, topk_method: 'greedy', torch_dtype: 'bfloat16', use_cache: true, v_head_dim: 128, vocab_size: 102400,
    },
  },
  mixtral: {
    model: 'Mixtral-8x7B-v0.1',
    source: 'https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json',
    config: {
      architectures: ['MixtralForCausalLM'], attention_dropout: 0.0, bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu',
      hidden_size: 4096, initializer_range: 0.02, intermediate_size: 14336, max_position_embeddings: 32768,
      model_type: 'mixtral', num_attention_heads: 32, num_experts_per_tok: 2, num_hidden_layers: 32, num_key_value_heads: 8,
      num_local_experts: 8, output_router_logits: false, rms_norm_eps: 1e-5, rope_theta: 1000000.0,
      router_aux_loss_coef: 0.02, sliding_window: null, tie_word_embeddings: false, torch_dtype: 'bfloat16', use_cache: true,
      vocab_size: 32000,
    },
  },
}

/** Part (a)'s width: every size that is not a count of layers, experts or routed experts made tiny. */
export function tinyWidth(c: Config): Config {
  const t: Config = { ...c, hidden_size: 64, vocab_size: 512, intermediate_size: 64 }
  if (c.model_type === 'deepseek_v2') {
    return { ...t, num_attention_heads: 4, num_key_value_heads: 4, kv_lora_rank: 16, qk_nope_head_dim: 16, qk_rope_head_dim: 8, v_head_dim: 16, moe_intermediate_size: 32 }
  }
  if (c.model_type === 'mixtral') return { ...t, intermediate_size: 32, num_attention_heads: 4, num_key_value_heads: 2 }
  if (c.model_type === 'qwen3_moe') return { ...t, moe_intermediate_size: 32, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16 }
  return { ...t, intermediate_size: 32, num_attention_heads: 4, num_key_value_heads: 4 } // olmoe: experts use intermediate_size
}

/** Tensor name, shape and the standard deviation of its random values ('norm': 1 + small noise). */
export type TensorPlan = [name: string, shape: number[], std: number | 'norm']

/** Every tensor of a config, with the Hub checkpoints' names (as tests/helpers/tinyCheckpoint.ts / tinyDeepseek.ts write). */
export function tensorPlan(c: Config): TensorPlan[] {
  const n = (k: string) => c[k] as number
  const d = n('hidden_size'), V = n('vocab_size'), H = n('num_attention_heads'), KV = n('num_key_value_heads') ?? H
  const out: TensorPlan[] = [['model.embed_tokens.weight', [V, d], 1], ['model.norm.weight', [d], 'norm'], ['lm_head.weight', [V, d], 1 / Math.sqrt(d)]]
  const lin = (name: string, o: number, i: number) => out.push([`${name}.weight`, [o, i], 1 / Math.sqrt(i)])
  const mlp = (p: string, f: number, [g, u, dn]: string[]) => { lin(`${p}.${g}`, f, d); lin(`${p}.${u}`, f, d); lin(`${p}.${dn}`, d, f) }
  const hf = ['gate_proj', 'up_proj', 'down_proj']
  for (let l = 0; l < n('num_hidden_layers'); l++) {
    const p = `model.layers.${l}`
    out.push([`${p}.input_layernorm.weight`, [d], 'norm'], [`${p}.post_attention_layernorm.weight`, [d], 'norm'])
    if (c.model_type === 'deepseek_v2') {
      const nope = n('qk_nope_head_dim'), rope = n('qk_rope_head_dim'), vd = n('v_head_dim'), r = n('kv_lora_rank')
      lin(`${p}.self_attn.q_proj`, H * (nope + rope), d)
      lin(`${p}.self_attn.kv_a_proj_with_mqa`, r + rope, d)
      out.push([`${p}.self_attn.kv_a_layernorm.weight`, [r], 'norm'])
      lin(`${p}.self_attn.kv_b_proj`, H * (nope + vd), r)
      lin(`${p}.self_attn.o_proj`, d, H * vd)
      if (l < n('first_k_dense_replace') || l % n('moe_layer_freq') !== 0) { mlp(`${p}.mlp`, n('intermediate_size'), hf); continue }
      out.push([`${p}.mlp.gate.weight`, [n('n_routed_experts'), d], 1 / Math.sqrt(d)])
      for (let e = 0; e < n('n_routed_experts'); e++) mlp(`${p}.mlp.experts.${e}`, n('moe_intermediate_size'), hf)
      mlp(`${p}.mlp.shared_experts`, n('moe_intermediate_size') * n('n_shared_experts'), hf)
      continue
    }
    const hd = (c.head_dim as number | undefined) ?? d / H
    lin(`${p}.self_attn.q_proj`, H * hd, d)
    lin(`${p}.self_attn.k_proj`, KV * hd, d)
    lin(`${p}.self_attn.v_proj`, KV * hd, d)
    lin(`${p}.self_attn.o_proj`, d, H * hd)
    if (c.model_type === 'olmoe') out.push([`${p}.self_attn.q_norm.weight`, [H * hd], 'norm'], [`${p}.self_attn.k_norm.weight`, [KV * hd], 'norm'])
    if (c.model_type === 'qwen3_moe') out.push([`${p}.self_attn.q_norm.weight`, [hd], 'norm'], [`${p}.self_attn.k_norm.weight`, [hd], 'norm'])
    if (c.model_type === 'mixtral') {
      out.push([`${p}.block_sparse_moe.gate.weight`, [n('num_local_experts'), d], 1 / Math.sqrt(d)])
      for (let e = 0; e < n('num_local_experts'); e++) mlp(`${p}.block_sparse_moe.experts.${e}`, n('intermediate_size'), ['w1', 'w3', 'w2'])
    } else {
      out.push([`${p}.mlp.gate.weight`, [n('num_experts'), d], 1 / Math.sqrt(d)])
      const f = n(c.model_type === 'qwen3_moe' ? 'moe_intermediate_size' : 'intermediate_size')
      for (let e = 0; e < n('num_experts'); e++) mlp(`${p}.mlp.experts.${e}`, f, hf)
    }
  }
  return out
}

const POOL = 1 << 20, CHUNK = 1 << 16

const F32 = new Float32Array(1), U32 = new Uint32Array(F32.buffer)

/** bf16 bits of x, round to nearest even. */
function bf16(x: number): number {
  F32[0] = x
  const u = U32[0]
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16
}

/**
 * Writes config.json, a tokenizer and one BF16 model.safetensors, streaming: values are 64K-long
 * runs taken at random offsets from a pool of 1M uniform draws per standard deviation, so a
 * multi-GB checkpoint costs seconds and no more memory than one pool. Returns the file's bytes.
 */
export async function writeCheckpoint(dir: string, config: Config, seed: number): Promise<number> {
  const { tinyTokenizerJson } = await import('../tests/helpers/tinyCheckpoint.ts')
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2))
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), tinyTokenizerJson())
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' }))
  const plan = tensorPlan(config)
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } }
  let offset = 0
  for (const [name, shape] of plan) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1)
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8)
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)))
  const rng = mulberry32(seed)
  const pools = new Map<string, Uint16Array>()
  const pool = (std: number | 'norm') => {
    const key = String(std)
    let p = pools.get(key)
    if (!p) {
      p = new Uint16Array(POOL + CHUNK)
      const a = std === 'norm' ? 0.1 * Math.sqrt(3) : std * Math.sqrt(3)
      for (let i = 0; i < p.length; i++) p[i] = bf16((std === 'norm' ? 1 : 0) + a * (2 * rng() - 1))
      pools.set(key, p)
    }
    return p
  }
  const file = path.join(dir, 'model.safetensors')
  const fd = fs.openSync(file, 'w')
  try {
    fs.writeSync(fd, len)
    fs.writeSync(fd, Buffer.from(json, 'utf8'))
    for (const [, shape, std] of plan) {
      const p = pool(std)
      let left = shape.reduce((a, b) => a * b, 1)
      while (left > 0) {
        const n = Math.min(left, CHUNK)
        const at = Math.floor(rng() * POOL)
        fs.writeSync(fd, new Uint8Array(p.buffer, 2 * at, 2 * n))
        left -= n
      }
    }
  } finally {
    fs.closeSync(fd)
  }
  return fs.statSync(file).size
}
