// A config.json as transformers v5 saves it: save_pretrained writes each attribute under its stored
// name (PreTrainedConfig.to_dict is the instance __dict__, and __setattr__ follows attribute_map), so a
// v5 Qwen3-MoE file says `num_local_experts` where v4 and the Hub say `num_experts`; Mixtral, OLMoE and
// DeepSeek read the other name as well. Either name must give the same model, two names disagreeing is
// an error naming both, and `transform` must update the name the file uses (it wrote `num_experts: null`
// beside the stale `num_local_experts`).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { setExpertCount } from '../../src/model/configDefaults.ts'
import { moeLayers, parseModelSpec, type Family } from '../../src/model/modelSpec.ts'
import { lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

type Json = Record<string, unknown>

const BASE: Record<Family, Json> = {
  mixtral: { architectures: ['MixtralForCausalLM'], num_key_value_heads: 2, intermediate_size: 16, num_local_experts: 6 },
  olmoe: { architectures: ['OlmoeForCausalLM'], intermediate_size: 16, num_experts_per_tok: 2, num_experts: 6 },
  qwen2_moe: { architectures: ['Qwen2MoeForCausalLM'], num_key_value_heads: 2, moe_intermediate_size: 8, intermediate_size: 16, num_experts_per_tok: 2, num_experts: 6 },
  qwen3_moe: { architectures: ['Qwen3MoeForCausalLM'], num_key_value_heads: 2, moe_intermediate_size: 8, intermediate_size: 16, num_experts_per_tok: 2, num_experts: 6 },
  deepseek_v2: { architectures: ['DeepseekV2ForCausalLM'], num_experts_per_tok: 2, moe_intermediate_size: 8, intermediate_size: 16, kv_lora_rank: 8, q_lora_rank: 8, qk_nope_head_dim: 4, qk_rope_head_dim: 4, v_head_dim: 4, first_k_dense_replace: 1, n_routed_experts: 6 },
  deepseek_v3: { architectures: ['DeepseekV3ForCausalLM'], num_experts_per_tok: 2, moe_intermediate_size: 8, intermediate_size: 16, kv_lora_rank: 8, q_lora_rank: 8, qk_nope_head_dim: 4, qk_rope_head_dim: 4, v_head_dim: 4, first_k_dense_replace: 1, n_group: 2, topk_group: 1, n_routed_experts: 6 },
}
// transformers main, configuration_<family>.py attribute_map: the canonical key and the other name.
const ALIAS: Record<Family, [string, string] | null> = {
  mixtral: ['num_local_experts', 'num_experts'],
  olmoe: ['num_experts', 'num_local_experts'],
  qwen2_moe: null,
  qwen3_moe: ['num_experts', 'num_local_experts'],
  deepseek_v2: ['n_routed_experts', 'num_experts'],
  deepseek_v3: ['n_routed_experts', 'num_local_experts'],
}

function config(family: Family): Json {
  return { vocab_size: 64, hidden_size: 32, num_hidden_layers: 3, num_attention_heads: 4, ...BASE[family] }
}

describe('attribute_map names of the expert count (transformers v5 config.json)', () => {
  for (const family of Object.keys(BASE) as Family[]) {
    const alias = ALIAS[family]
    if (!alias) continue
    it(`${family}: '${alias[1]}' is read as '${alias[0]}'; two different values are an error naming both`, () => {
      const canonical = config(family)
      const renamed = { ...canonical, [alias[1]]: canonical[alias[0]] }
      delete renamed[alias[0]]
      assert.deepEqual(moeLayers(parseModelSpec(renamed)).map(l => l.numExperts), moeLayers(parseModelSpec(canonical)).map(l => l.numExperts))
      assert.equal(moeLayers(parseModelSpec(renamed))[0].numExperts, 6)
      // Same value under both names is fine.
      assert.equal(moeLayers(parseModelSpec({ ...canonical, [alias[1]]: 6 }))[0].numExperts, 6)
      assert.throws(() => parseModelSpec({ ...canonical, [alias[1]]: 8 }), (e: unknown) =>
        e instanceof HarnessError && e.code === 'CONFIG_INVALID' && e.message.includes(`'${alias[0]}' (6)`) && e.message.includes(`'${alias[1]}' (8)`))
    })
  }
  it('a writer sets the count under every name the file uses, else under the class field', () => {
    const both: Json = { ...config('qwen3_moe'), num_local_experts: 6 }
    setExpertCount(both, 'qwen3_moe', 3)
    assert.equal(both.num_experts, 3)
    assert.equal(both.num_local_experts, 3)
    assert.equal(moeLayers(parseModelSpec(both))[0].numExperts, 3)
    const none: Json = { ...config('olmoe') }
    delete none.num_experts
    setExpertCount(none, 'olmoe', 5)
    assert.deepEqual([none.num_experts, 'num_local_experts' in none], [5, false])
    const mixtral: Json = { ...config('mixtral') }
    setExpertCount(mixtral, 'mixtral', 2)
    assert.deepEqual([mixtral.num_local_experts, 'num_experts' in mixtral], [2, false])
  })
  it("hidden_act 'swish' is SiLU, as transformers' ACT2FN maps it", () => {
    assert.deepEqual(parseModelSpec({ ...config('olmoe'), hidden_act: 'swish' }), parseModelSpec({ ...config('olmoe'), hidden_act: 'silu' }))
    assert.throws(() => parseModelSpec({ ...config('olmoe'), hidden_act: 'gelu' }), (e: unknown) => e instanceof HarnessError && e.code === 'CONFIG_UNSUPPORTED')
  })
  it('qwen2_moe has no alias: num_local_experts is not its expert count', () => {
    const cfg = { ...config('qwen2_moe'), num_local_experts: 8 }
    assert.equal(moeLayers(parseModelSpec(cfg))[0].numExperts, 6)
  })
})

describe('a Qwen3-MoE checkpoint whose config.json transformers v5 wrote', () => {
  it('scores as the v4 file does, and transform updates num_local_experts', () => {
    const root = tmpDir()
    const v4 = path.join(root, 'v4')
    writeTinyCheckpoint(v4, { family: 'qwen3_moe', dtype: 'BF16', seed: 7, shards: 2 })
    const v5 = path.join(root, 'v5')
    fs.mkdirSync(v5)
    for (const f of fs.readdirSync(v4)) if (f !== 'config.json') fs.copyFileSync(path.join(v4, f), path.join(v5, f))
    const cfg = JSON.parse(fs.readFileSync(path.join(v4, 'config.json'), 'utf8')) as Json
    const { num_experts: experts, torch_dtype: dtype, rope_theta: theta, ...rest } = cfg
    fs.writeFileSync(path.join(v5, 'config.json'), JSON.stringify({ ...rest, num_local_experts: experts, dtype, rope_parameters: { rope_type: 'default', rope_theta: theta }, transformers_version: '5.0.0' }, null, 2))

    const ids = '5,6,7,8,9,10,11,12,13'
    const a = runCli(['score', '--model', v4, '--ids', ids, '--json'])
    const b = runCli(['score', '--model', v5, '--ids', ids, '--json'])
    assert.equal(a.status, 0, a.stderr)
    assert.equal(b.status, 0, b.stderr)
    assert.deepEqual(lastJson(b.stdout).logprobs, lastJson(a.stdout).logprobs)

    const out = path.join(root, 'pruned')
    const t = runCli(['transform', '--model', v5, '--method', 'frequency-pruning', '--ratio', '0.5', '--out', out], { env: { MOE_HARNESS_HOME: path.join(root, 'home') } })
    assert.equal(t.status, 0, t.stderr)
    const written = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Json
    assert.equal(written.num_local_experts, 2)
    assert.equal('num_experts' in written, false, 'no second, stale expert-count key')
    const s = runCli(['score', '--model', out, '--ids', ids, '--json'])
    assert.equal(s.status, 0, s.stderr)
    assert.equal(lastJson(s.stdout).logprobs.length, 8)
  })
})
