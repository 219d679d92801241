// transformers v5 accepts rope parameters keyed by layer type ("rope_parameters": {"full_attention":
// {...}}; RotaryEmbeddingConfigMixin.standardize_rope_params). The harness read only the flat keys of
// such a dict, so a nested rope_theta of 1e6 or a nested YaRN was silently replaced by the default
// rotary embedding (scores as of a different model, exit 0). Now the entry of the layer types in use is
// read, and entries that are missing or disagree are errors naming the field.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { parseModelSpec } from '../../src/model/modelSpec.ts'

type Json = Record<string, unknown>

const QWEN2: Json = {
  architectures: ['Qwen2MoeForCausalLM'], vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, moe_intermediate_size: 8, intermediate_size: 16, num_experts_per_tok: 2, num_experts: 4, max_position_embeddings: 512,
}
const MIXTRAL: Json = {
  architectures: ['MixtralForCausalLM'], vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, intermediate_size: 16, num_local_experts: 4,
}

function throwsCode(cfg: Json, code: string, ...parts: string[]) {
  assert.throws(() => parseModelSpec(cfg), (e: unknown) => e instanceof HarnessError && e.code === code && parts.every(p => e.message.includes(p)),
    `expected ${code} naming ${parts.join(', ')}`)
}

describe('rope_parameters keyed by layer type', () => {
  it('a nested rope_theta is the one used, with or without layer_types', () => {
    const flat = parseModelSpec({ ...QWEN2, rope_theta: 1e6 })
    assert.equal(flat.rope.theta, 1e6)
    for (const extra of [{}, { layer_types: ['full_attention', 'full_attention'] }]) {
      const nested = parseModelSpec({ ...QWEN2, ...extra, rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1e6 } } })
      assert.equal(nested.rope.theta, 1e6)
      assert.deepEqual(nested.rope.invFreq, flat.rope.invFreq)
      assert.notDeepEqual(nested.rope.invFreq, parseModelSpec(QWEN2).rope.invFreq, 'differs from the default 1e4')
    }
  })

  it('a nested YaRN computes YaRN as the flat dict does; equal entries for every used type are one embedding', () => {
    const yarn = { rope_type: 'yarn', rope_theta: 10000, factor: 4, original_max_position_embeddings: 128 }
    const flat = parseModelSpec({ ...QWEN2, rope_parameters: yarn })
    const nested = parseModelSpec({ ...QWEN2, layer_types: ['full_attention', 'sliding_attention'], rope_parameters: { full_attention: yarn, sliding_attention: { ...yarn } } })
    assert.equal(flat.rope.type, 'yarn')
    assert.deepEqual(nested.rope, flat.rope)
    assert.ok(flat.rope.attentionFactor > 1)
  })

  it('refuses what one rotary embedding cannot honour, naming the field', () => {
    throwsCode({ ...QWEN2, layer_types: ['full_attention', 'sliding_attention'], rope_parameters: { full_attention: { rope_theta: 1e6 } } },
      'CONFIG_INVALID', "'sliding_attention'", 'rope_parameters')
    throwsCode({ ...QWEN2, layer_types: ['full_attention', 'sliding_attention'], rope_parameters: { full_attention: { rope_theta: 1e6 }, sliding_attention: { rope_theta: 1e4 } } },
      'CONFIG_UNSUPPORTED', 'different rotary embeddings')
    throwsCode({ ...QWEN2, rope_parameters: { rope_type: 'default', full_attention: { rope_theta: 1e6 } } }, 'CONFIG_INVALID', 'mixes per-layer-type entries')
    throwsCode({ ...MIXTRAL, rope_parameters: { full_attention: { rope_type: 'yarn', factor: 4, rope_theta: 1e4 } } }, 'CONFIG_UNSUPPORTED', 'rope_parameters.full_attention.rope_type')
    throwsCode({ ...QWEN2, rope_parameters: { full_attention: { rope_theta: 1e4, partial_rotary_factor: 0.5 } } }, 'CONFIG_UNSUPPORTED', 'rope_parameters.full_attention.partial_rotary_factor')
  })
})
