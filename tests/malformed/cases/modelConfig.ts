// Broken config.json and tokenizer files next to valid weights.
import fs from 'node:fs'
import path from 'node:path'
import { garbage, readJson, writeJson } from '../fixtures.ts'
import type { Fixtures, MalformedCase } from './types.ts'

const score = (model: string) => ['score', '--model', model, '--text', 'The quick brown fox']

/** A copy of the valid model whose config.json is edited by `edit`. */
function withConfig(dir: string, fx: Fixtures, edit: (c: Record<string, any>) => void): string[] {
  const m = fx.model(dir)
  const c = readJson(path.join(m, 'config.json'))
  edit(c)
  writeJson(path.join(m, 'config.json'), c)
  return score(m)
}

const CONFIG = ['CONFIG_INVALID', 'CONFIG_UNSUPPORTED']

export const configCases: MalformedCase[] = [
  {
    name: 'config-not-json',
    setup: (dir, fx) => { const m = fx.model(dir); fs.writeFileSync(path.join(m, 'config.json'), '{"hidden_size": 32,'); return score(m) },
    code: CONFIG, message: /config\.json/,
  },
  {
    name: 'config-is-array',
    setup: (dir, fx) => { const m = fx.model(dir); fs.writeFileSync(path.join(m, 'config.json'), '[1, 2]'); return score(m) },
    code: [...CONFIG, 'UNKNOWN_ARCHITECTURE'], message: /config\.json|architecture/,
  },
  {
    name: 'config-missing',
    setup: (dir, fx) => { const m = fx.model(dir); fs.rmSync(path.join(m, 'config.json')); return score(m) },
    code: ['CHECKPOINT_NOT_FOUND', ...CONFIG], message: /config\.json/,
  },
  {
    name: 'config-missing-hidden-size',
    // transformers' default (4096 for Mixtral) applies, and then the tensors disagree with it.
    setup: (dir, fx) => withConfig(dir, fx, c => { delete c.hidden_size }),
    code: [...CONFIG, 'TENSOR_SHAPE'], message: /hidden_size|config\.json implies/,
  },
  {
    name: 'config-hidden-size-string',
    setup: (dir, fx) => withConfig(dir, fx, c => { c.hidden_size = '32' }),
    code: CONFIG, message: /hidden_size/,
  },
  {
    name: 'config-layers-1e9', area: 'H3',
    setup: (dir, fx) => withConfig(dir, fx, c => { c.num_hidden_layers = 1e9 }),
    code: [...CONFIG, 'TENSOR_MISSING', 'TENSOR_SHAPE', 'TENSOR_UNUSED', 'SAFETENSORS_INVALID'], message: /num_hidden_layers|layers\.2\./,
  },
  {
    name: 'config-layers-fewer-than-tensors', area: 'H3',
    setup: (dir, fx) => withConfig(dir, fx, c => { c.num_hidden_layers = 1 }),
    code: [...CONFIG, 'TENSOR_MISSING', 'TENSOR_SHAPE', 'TENSOR_UNUSED', 'SAFETENSORS_INVALID'], message: /num_hidden_layers|layers\.1\./,
  },
  {
    name: 'config-unknown-architecture',
    setup: (dir, fx) => withConfig(dir, fx, c => { c.architectures = ['MixtralForCausaLM'] }),
    code: 'UNKNOWN_ARCHITECTURE', message: /MixtralForCausaLM/,
  },
  {
    name: 'config-top-k-above-experts',
    setup: (dir, fx) => withConfig(dir, fx, c => { c.num_experts_per_tok = 9 }),
    code: CONFIG, message: /num_experts_per_tok/,
  },
  {
    name: 'config-negative-vocab',
    setup: (dir, fx) => withConfig(dir, fx, c => { c.vocab_size = -5 }),
    code: [...CONFIG, 'TENSOR_SHAPE'], message: /vocab_size|embed_tokens/,
  },
  {
    name: 'config-hidden-size-mismatch',
    setup: (dir, fx) => withConfig(dir, fx, c => { c.hidden_size = 64; c.head_dim = 16 }),
    code: ['TENSOR_SHAPE', ...CONFIG], message: /hidden_size|shape/,
  },
  {
    name: 'config-heads-not-dividing',
    setup: (dir, fx) => withConfig(dir, fx, c => { c.num_key_value_heads = 3 }),
    code: [...CONFIG, 'TENSOR_SHAPE'], message: /num_key_value_heads|k_proj/,
  },
]

export const tokenizerCases: MalformedCase[] = [
  {
    name: 'tokenizer-missing',
    setup: (dir, fx) => { const m = fx.model(dir); fs.rmSync(path.join(m, 'tokenizer.json')); return score(m) },
    code: ['TOKENIZER_INVALID', 'CHECKPOINT_NOT_FOUND'], message: /tokenizer\.json/,
  },
  {
    name: 'tokenizer-not-json',
    setup: (dir, fx) => { const m = fx.model(dir); fs.writeFileSync(path.join(m, 'tokenizer.json'), '{"model": {"type": "BPE",'); return score(m) },
    code: 'TOKENIZER_INVALID', message: /tokenizer\.json/,
  },
  {
    name: 'tokenizer-random-bytes',
    setup: (dir, fx) => { const m = fx.model(dir); fs.writeFileSync(path.join(m, 'tokenizer.json'), garbage(2000, 3)); return score(m) },
    code: 'TOKENIZER_INVALID', message: /tokenizer\.json/,
  },
  {
    name: 'tokenizer-empty-object',
    setup: (dir, fx) => { const m = fx.model(dir); fs.writeFileSync(path.join(m, 'tokenizer.json'), '{}'); return score(m) },
    code: 'TOKENIZER_INVALID', message: /tokenizer\.json/,
  },
  {
    name: 'tokenizer-is-a-folder',
    setup: (dir, fx) => { const m = fx.model(dir); fs.rmSync(path.join(m, 'tokenizer.json')); fs.mkdirSync(path.join(m, 'tokenizer.json')); return score(m) },
    code: ['TOKENIZER_INVALID', 'CHECKPOINT_NOT_FOUND', 'FILE_ACCESS'], message: /tokenizer\.json.*(folder|directory)/i,
  },
  {
    name: 'tokenizer-config-not-json',
    setup: (dir, fx) => { const m = fx.model(dir); fs.writeFileSync(path.join(m, 'tokenizer_config.json'), "{'bos_token': '<s>'}"); return score(m) },
    code: ['TOKENIZER_INVALID', 'CONFIG_INVALID'], message: /tokenizer_config\.json/,
  },
  {
    name: 'tokenizer-ids-beyond-vocab',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      const c = readJson(path.join(m, 'config.json'))
      // The embedding keeps its rows; the config claims fewer than the tokenizer produces.
      c.vocab_size = 40
      writeJson(path.join(m, 'config.json'), c)
      return score(m)
    },
    code: ['TOKEN_OUT_OF_RANGE', 'TENSOR_SHAPE', 'CONFIG_INVALID', 'TOKENIZER_INVALID'], message: /vocab_size|embed_tokens|token/,
  },
]
