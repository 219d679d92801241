// The one table of config.json defaults: for every family, the value transformers' configuration
// class gives a key that config.json leaves out. A published checkpoint's habit is never a default
// (Qwen3-MoE checkpoints all say norm_topk_prob: true; the class default is False).
//
// Read from huggingface/transformers main (the v5 dataclass-style configuration classes; the v4
// __init__ signatures carry the same values), file src/transformers/models/<family>/configuration_<family>.py:
//   mixtral    MixtralConfig      (default_theta = 1000000.0)
//   olmoe      OlmoeConfig
//   qwen2_moe  Qwen2MoeConfig
//   qwen3_moe  Qwen3MoeConfig
//   deepseek_v2 DeepseekV2Config
//   deepseek_v3 DeepseekV3Config
// rope_theta: PreTrainedConfig.default_theta (10000.0) unless the class overrides it (Mixtral).
//
// Explicit null is not the same as absent: `null` here would mean the class default itself is None.
// Where transformers gives an explicit null a meaning of its own, modelSpec.ts says so next to the key
// (q_lora_rank: null = no query compression; n_shared_experts: null = no shared experts;
// num_key_value_heads: null = num_attention_heads; mlp_only_layers: null = []).
import { fail } from '../errors.ts'
import type { Family } from './modelSpec.ts'

export interface FamilyDefaults {
  /** Where the values were read. */
  source: string
  values: Readonly<Record<string, unknown>>
  /**
   * The configuration class's `attribute_map`, as canonical key -> the other names config.json may
   * use for it. transformers reads either name as one setting, and v5's save_pretrained writes the
   * attribute's stored name (to_dict is the instance __dict__), which for Qwen3-MoE is
   * `num_local_experts`, not the `num_experts` the Hub files and v4 use.
   */
  aliases?: Readonly<Record<string, readonly string[]>>
}

const DEEPSEEK_COMMON = {
  hidden_act: 'silu',
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
  attention_bias: false,
  rope_theta: 10000.0,
  rope_scaling: null,
  rope_parameters: null,
  num_key_value_heads: null,
}

export const CONFIG_DEFAULTS: Readonly<Record<Family, FamilyDefaults>> = {
  mixtral: {
    source: 'transformers src/transformers/models/mixtral/configuration_mixtral.py, class MixtralConfig',
    values: {
      vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32,
      num_key_value_heads: 8, head_dim: null, hidden_act: 'silu', max_position_embeddings: 4096 * 32, rms_norm_eps: 1e-5,
      tie_word_embeddings: false, sliding_window: null, num_experts_per_tok: 2, num_local_experts: 8,
      rope_theta: 1e6, rope_scaling: null, rope_parameters: null,
    },
    aliases: { num_local_experts: ['num_experts'] },
  },
  olmoe: {
    source: 'transformers src/transformers/models/olmoe/configuration_olmoe.py, class OlmoeConfig',
    values: {
      vocab_size: 50304, hidden_size: 2048, intermediate_size: 2048, num_hidden_layers: 16, num_attention_heads: 16,
      num_key_value_heads: null, hidden_act: 'silu', max_position_embeddings: 4096, rms_norm_eps: 1e-5,
      tie_word_embeddings: false, attention_bias: false, clip_qkv: null, num_experts_per_tok: 8, num_experts: 64,
      norm_topk_prob: false, rope_theta: 10000.0, rope_scaling: null, rope_parameters: null,
    },
    aliases: { num_experts: ['num_local_experts'] },
  },
  qwen2_moe: {
    source: 'transformers src/transformers/models/qwen2_moe/configuration_qwen2_moe.py, class Qwen2MoeConfig',
    values: {
      vocab_size: 151936, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 24, num_attention_heads: 16,
      num_key_value_heads: 16, hidden_act: 'silu', max_position_embeddings: 32768, rms_norm_eps: 1e-6,
      tie_word_embeddings: false, use_sliding_window: false, sliding_window: 4096, decoder_sparse_step: 1,
      moe_intermediate_size: 1408, shared_expert_intermediate_size: 5632, num_experts_per_tok: 4, num_experts: 60,
      norm_topk_prob: false, mlp_only_layers: null, qkv_bias: true, rope_theta: 10000.0, rope_scaling: null, rope_parameters: null,
    },
  },
  qwen3_moe: {
    source: 'transformers src/transformers/models/qwen3_moe/configuration_qwen3_moe.py, class Qwen3MoeConfig',
    values: {
      vocab_size: 151936, hidden_size: 2048, intermediate_size: 6144, num_hidden_layers: 24, num_attention_heads: 32,
      num_key_value_heads: 4, head_dim: null, hidden_act: 'silu', max_position_embeddings: 32768, rms_norm_eps: 1e-6,
      tie_word_embeddings: false, attention_bias: false, use_sliding_window: false, sliding_window: 4096,
      decoder_sparse_step: 1, moe_intermediate_size: 768, num_experts_per_tok: 8, num_experts: 128,
      norm_topk_prob: false, mlp_only_layers: null, rope_theta: 10000.0, rope_scaling: null, rope_parameters: null,
    },
    // Qwen3MoeConfig.attribute_map = {"num_experts": "num_local_experts"}: a v5-saved config.json says num_local_experts.
    aliases: { num_experts: ['num_local_experts'] },
  },
  deepseek_v2: {
    source: 'transformers src/transformers/models/deepseek_v2/configuration_deepseek_v2.py, class DeepseekV2Config',
    values: {
      ...DEEPSEEK_COMMON,
      vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32,
      max_position_embeddings: 2048, mlp_bias: false, first_k_dense_replace: 0, kv_lora_rank: 512, q_lora_rank: 1536,
      n_group: null, n_routed_experts: 64, n_shared_experts: 2, qk_nope_head_dim: 128, qk_rope_head_dim: 64,
      routed_scaling_factor: 1.0, topk_group: null, topk_method: 'greedy', norm_topk_prob: false, v_head_dim: 128,
      num_experts_per_tok: null, moe_intermediate_size: 1407,
      // Not a DeepseekV2Config field (transformers builds an MoE block on every layer >= first_k_dense_replace);
      // the Hub remote code's default is 1, the only value we accept besides an explicit 1.
      moe_layer_freq: 1,
    },
    aliases: { n_routed_experts: ['num_experts'] },
  },
  deepseek_v3: {
    source: 'transformers src/transformers/models/deepseek_v3/configuration_deepseek_v3.py, class DeepseekV3Config',
    values: {
      ...DEEPSEEK_COMMON,
      vocab_size: 129280, hidden_size: 7168, intermediate_size: 18432, moe_intermediate_size: 2048, num_hidden_layers: 61,
      num_attention_heads: 128, n_shared_experts: 1, n_routed_experts: 256, routed_scaling_factor: 2.5, kv_lora_rank: 512,
      q_lora_rank: 1536, qk_rope_head_dim: 64, v_head_dim: 128, qk_nope_head_dim: 128, n_group: 8, topk_group: 4,
      num_experts_per_tok: 8, first_k_dense_replace: 3, norm_topk_prob: true, max_position_embeddings: 4096,
      rope_interleave: true,
      // Not DeepseekV3Config fields: the Hub config.json names the router transformers hard-codes.
      topk_method: 'noaux_tc', scoring_func: 'sigmoid', moe_layer_freq: 1,
      // DeepseekV3Config.num_mtp_layers (default 1), stored as num_nextn_predict_layers (attribute_map):
      // layers the scoring model does not run (unusedTensors.ts accounts for their tensors).
      num_nextn_predict_layers: 1,
    },
    aliases: { n_routed_experts: ['num_local_experts'], num_nextn_predict_layers: ['num_mtp_layers'] },
  },
}

/**
 * The name under which config.json gives `key` (the key itself, or one of its attribute_map aliases),
 * or undefined when it gives neither. Errors: CONFIG_INVALID when two names give different values
 * (transformers would keep whichever it sets last, so the file is ambiguous).
 */
export function configKeyIn(cfg: Record<string, unknown>, family: Family, key: string): string | undefined {
  const own = (k: string) => Object.prototype.hasOwnProperty.call(cfg, k)
  const present = [key, ...(CONFIG_DEFAULTS[family].aliases?.[key] ?? [])].filter(own)
  if (present.length > 1 && present.some(k => JSON.stringify(cfg[k]) !== JSON.stringify(cfg[present[0]]))) {
    fail('CONFIG_INVALID', `config.json gives ${present.map(k => `'${k}' (${JSON.stringify(cfg[k])})`).join(' and ')}, which transformers reads as one setting of ${family}; keep one of them (the checkpoint's tensors decide which value is right).`)
  }
  return present[0]
}

/**
 * The value of `key` for this family: config.json's own value when the key or an attribute_map alias
 * of it is present (null included), otherwise the configuration-class default. A key missing from the
 * table is a programming error.
 */
export function configValue(cfg: Record<string, unknown>, family: Family, key: string): unknown {
  const present = configKeyIn(cfg, family, key)
  if (present !== undefined) return cfg[present]
  const table = CONFIG_DEFAULTS[family].values
  if (!Object.prototype.hasOwnProperty.call(table, key)) {
    throw new Error(`configDefaults: no transformers default recorded for '${key}' of ${family}; add it to src/model/configDefaults.ts`)
  }
  return table[key]
}

/**
 * Those of `keys` that config.json leaves out and that therefore take the configuration-class default,
 * with that default: what a shape or value error must name, since the file itself does not say it.
 */
export function defaultedKeys(cfg: Record<string, unknown>, family: Family, keys: readonly string[]): { key: string; value: unknown }[] {
  const table = CONFIG_DEFAULTS[family].values
  return keys
    .filter(k => Object.prototype.hasOwnProperty.call(table, k) && configKeyIn(cfg, family, k) === undefined)
    .map(key => ({ key, value: table[key] }))
}

/** The routed-expert count's canonical key per family (the configuration-class field). */
const EXPERT_COUNT_KEY: Readonly<Record<Family, string>> = {
  mixtral: 'num_local_experts', olmoe: 'num_experts', qwen2_moe: 'num_experts', qwen3_moe: 'num_experts',
  deepseek_v2: 'n_routed_experts', deepseek_v3: 'n_routed_experts',
}

/**
 * Sets the routed-expert count of a config.json object in place under every name the file already
 * uses for it (a v5-saved Qwen3-MoE says `num_local_experts`; a file may give both names), else under
 * the class field, which transformers v4 and v5 both read.
 */
export function setExpertCount(cfg: Record<string, unknown>, family: Family, count: number): void {
  const key = EXPERT_COUNT_KEY[family]
  const names = [key, ...(CONFIG_DEFAULTS[family].aliases?.[key] ?? [])].filter(k => Object.prototype.hasOwnProperty.call(cfg, k))
  for (const k of names.length ? names : [key]) cfg[k] = count
}
