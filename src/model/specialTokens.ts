// Special tokens (BOS, EOS, UNK, PAD, ...) resolved the way transformers' AutoTokenizer resolves them,
// so that lm-eval's prefix token (HFLM.prefix_token_id) is the one the HF stack would use.
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'

/** SpecialTokensMixin.SPECIAL_TOKENS_ATTRIBUTES, in transformers' order (it is the order HF adds missing ones). */
export const SPECIAL_TOKEN_NAMES = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const
export type SpecialTokenName = (typeof SPECIAL_TOKEN_NAMES)[number]

/** Where a special token's value came from. */
export type TokenSource = 'tokenizer_config.json' | 'special_tokens_map.json' | `class default (${string})` | 'absent'

export interface ResolvedSpecialToken {
  /** The token's text, or null when the tokenizer has none (explicit null, or no value anywhere). */
  content: string | null
  /** Its id (undefined when content is null, or when it resolves to a missing UNK). */
  id: number | undefined
  source: TokenSource
}

export interface SpecialTokens {
  /** Tokenizer class whose __init__ defaults fill absent tokens, and where the class name came from. */
  tokenizerClass: { name: string | null; from: 'tokenizer_config.json' | 'config.json tokenizer_class' | 'config.json model_type' | 'none'; defaultsKnown: boolean }
  tokens: Record<SpecialTokenName, ResolvedSpecialToken>
  /** Named special tokens missing from tokenizer.json, added with fresh ids as PreTrainedTokenizerFast does. */
  added: { id: number; content: string }[]
  /** Files read, relative to the checkpoint folder. */
  files: string[]
}

type TokenValue = string | null

// transformers' tokenizer classes' __init__ defaults for the named special tokens (models/*/tokenization_*.py,
// identical in the *Fast classes of v4 and the TokenizersBackend classes of v5). Keys are without "Fast".
const CLASS_DEFAULTS: Record<string, Partial<Record<SpecialTokenName, TokenValue>>> = {
  PreTrainedTokenizer: {},
  TokenizersBackend: {},
  // models/qwen2/tokenization_qwen2.py: bos_token=None, "no BOS" is the design of the Qwen tokenizers.
  Qwen2Tokenizer: { unk_token: '<|endoftext|>', bos_token: null, eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' },
  // models/llama/tokenization_llama*.py (Mixtral and DeepSeek-V2/V3 map to it).
  LlamaTokenizer: { unk_token: '<unk>', bos_token: '<s>', eos_token: '</s>', pad_token: null },
  // models/gpt2/tokenization_gpt2*.py and models/gpt_neox/tokenization_gpt_neox_fast.py (OLMoE).
  GPT2Tokenizer: { unk_token: '<|endoftext|>', bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' },
  GPTNeoXTokenizer: { unk_token: '<|endoftext|>', bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', pad_token: null },
}

// models/auto/tokenization_auto.py TOKENIZER_MAPPING_NAMES for the families the harness loads: the class
// AutoTokenizer picks when neither tokenizer_config.json nor config.json names one.
const MODEL_TYPE_CLASS: Record<string, string> = {
  mixtral: 'LlamaTokenizer', deepseek_v2: 'LlamaTokenizer', deepseek_v3: 'LlamaTokenizer',
  olmoe: 'GPTNeoXTokenizer', qwen2_moe: 'Qwen2Tokenizer', qwen3_moe: 'Qwen2Tokenizer',
}

function readJsonObject(file: string): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    fail('TOKENIZER_INVALID', `${file} does not parse as JSON (${(e as Error).message}); fix or re-download it.`)
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) fail('TOKENIZER_INVALID', `${file} is not a JSON object; fix or re-download it.`)
  return v as Record<string, unknown>
}

/** A token value as transformers reads it: a string, an AddedToken dict ({"__type": "AddedToken", "content": ...}), or null. */
function tokenValue(v: unknown, file: string, key: string): TokenValue {
  if (v === null || typeof v === 'string') return v
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content
  fail('TOKENIZER_INVALID', `${file}: "${key}" is ${JSON.stringify(v)}; it must be a string, an AddedToken object with "content", or null.`)
}

/** tokenizer.json's vocabulary lookup (added tokens first, as tokenizers' token_to_id) and the model's vocab size. */
function vocabularyOf(tokenizerJson: Record<string, unknown>): { lookup: Map<string, number>; modelSize: number; addedIds: number[] } {
  const lookup = new Map<string, number>()
  const model = (tokenizerJson.model ?? {}) as { vocab?: unknown }
  let modelSize = 0
  if (Array.isArray(model.vocab)) {
    // Unigram: [[piece, score], ...], the id is the position.
    model.vocab.forEach((entry, i) => { if (Array.isArray(entry) && typeof entry[0] === 'string' && !lookup.has(entry[0])) lookup.set(entry[0], i) })
    modelSize = model.vocab.length
  } else if (model.vocab && typeof model.vocab === 'object') {
    const entries = Object.entries(model.vocab as Record<string, number>)
    for (const [k, id] of entries) lookup.set(k, id)
    modelSize = entries.length
  }
  const addedIds: number[] = []
  for (const t of (tokenizerJson.added_tokens ?? []) as { id: number; content: string }[]) {
    lookup.set(t.content, t.id)
    addedIds.push(t.id)
  }
  return { lookup, modelSize, addedIds }
}

/**
 * Resolves the named special tokens of the checkpoint in `dir` exactly as
 * `AutoTokenizer.from_pretrained(dir)` does (transformers v4.40+ and v5 agree on every step below):
 *
 * 1. tokenizer_config.json's values (PreTrainedTokenizerBase._from_pretrained loads it as init_kwargs).
 *    A value is a string, an AddedToken dict (its "content") or null. **An explicit null means the
 *    tokenizer has no such token**: null is passed to __init__, overriding the class default, and
 *    bos_token_id is None. Nothing falls back to config.json's bos_token_id/eos_token_id: those are
 *    the model's generation settings, which the tokenizer never reads.
 * 2. special_tokens_map.json overrides those values, but only when tokenizer_config.json has no
 *    "added_tokens_decoder" (the "legacy" branch of _from_pretrained; newer saves ignore the map).
 * 3. A token absent from both files takes the default of the tokenizer class's __init__:
 *    tokenizer_config.json "tokenizer_class", else config.json "tokenizer_class", else the class
 *    AutoTokenizer maps config.json's model_type to (TOKENIZER_MAPPING_NAMES). Without
 *    tokenizer_config.json at all, steps 1 and 3 still apply with empty values, so e.g. a Mixtral
 *    folder gets LlamaTokenizerFast's "<s>"/"</s>" and a Qwen3-MoE folder gets no BOS. When the
 *    class's defaults are not in the table below and BOS or EOS is absent from both files, the
 *    resolution fails (the prefix token would be a guess); naming the token in
 *    tokenizer_config.json (or null) fixes it.
 * 4. A named token that is not in tokenizer.json's vocabulary is added as a new special token by
 *    PreTrainedTokenizerFast.__init__ (all_special_tokens_extended), with the id tokenizers'
 *    AddedVocabulary gives it: the model vocabulary size, or the last added id + 1 when added tokens
 *    already reach past it. Its id then resolves like any other.
 *
 * Errors: TOKENIZER_INVALID for unreadable JSON, a token value of the wrong type, or an unknown
 * class with an absent BOS/EOS.
 */
export function resolveSpecialTokens(dir: string, modelConfig: Record<string, unknown>, tokenizerJson: Record<string, unknown>): SpecialTokens {
  const files: string[] = []
  const cfgFile = path.join(dir, 'tokenizer_config.json')
  const mapFile = path.join(dir, 'special_tokens_map.json')
  const tokCfg = fs.existsSync(cfgFile) ? (files.push('tokenizer_config.json'), readJsonObject(cfgFile)) : {}

  const values = new Map<SpecialTokenName, { value: TokenValue; source: TokenSource }>()
  for (const name of SPECIAL_TOKEN_NAMES) {
    if (name in tokCfg) values.set(name, { value: tokenValue(tokCfg[name], cfgFile, name), source: 'tokenizer_config.json' })
  }
  if (!('added_tokens_decoder' in tokCfg) && fs.existsSync(mapFile)) {
    files.push('special_tokens_map.json')
    const map = readJsonObject(mapFile)
    for (const name of SPECIAL_TOKEN_NAMES) {
      if (name in map) values.set(name, { value: tokenValue(map[name], mapFile, name), source: 'special_tokens_map.json' })
    }
  }

  const named = (v: unknown) => (typeof v === 'string' && v ? v : undefined)
  const classFrom = named(tokCfg.tokenizer_class) ? 'tokenizer_config.json' as const
    : named(modelConfig.tokenizer_class) ? 'config.json tokenizer_class' as const
    : named(modelConfig.model_type) && MODEL_TYPE_CLASS[modelConfig.model_type as string] ? 'config.json model_type' as const
    : 'none' as const
  const className = classFrom === 'tokenizer_config.json' ? (tokCfg.tokenizer_class as string)
    : classFrom === 'config.json tokenizer_class' ? (modelConfig.tokenizer_class as string)
    : classFrom === 'config.json model_type' ? MODEL_TYPE_CLASS[modelConfig.model_type as string]
    : null
  const defaults = className === null ? {} : CLASS_DEFAULTS[className.replace(/Fast$/, '')]
  for (const name of SPECIAL_TOKEN_NAMES) {
    if (values.has(name)) continue
    if (defaults === undefined && (name === 'bos_token' || name === 'eos_token')) {
      fail('TOKENIZER_INVALID', `${dir}: ${name} is set in neither tokenizer_config.json nor special_tokens_map.json, and the harness does not know the default of tokenizer class ${className}; add "${name}": "<its token>" (or null when the model has none) to tokenizer_config.json.`)
    }
    const value = defaults?.[name]
    values.set(name, value === undefined ? { value: null, source: 'absent' } : { value, source: `class default (${className})` })
  }

  const { lookup, modelSize, addedIds } = vocabularyOf(tokenizerJson)
  const added: { id: number; content: string }[] = []
  let lastAdded = addedIds.length ? Math.max(...addedIds) : undefined
  for (const name of SPECIAL_TOKEN_NAMES) {
    const content = values.get(name)!.value
    // tokenizers skips empty contents; everything else missing from the vocabulary gets a fresh id.
    if (content === null || content === '' || lookup.has(content)) continue
    const id = lastAdded === undefined ? modelSize : lastAdded >= modelSize || modelSize === 0 ? lastAdded + 1 : modelSize
    lookup.set(content, id)
    added.push({ id, content })
    lastAdded = id
  }

  const unk = values.get('unk_token')!.value
  const unkId = unk === null ? undefined : lookup.get(unk)
  const tokens = Object.fromEntries(SPECIAL_TOKEN_NAMES.map(name => {
    const { value, source } = values.get(name)!
    // convert_tokens_to_ids: a token outside the vocabulary resolves to unk_token_id.
    return [name, { content: value, id: value === null ? undefined : lookup.get(value) ?? unkId, source }]
  })) as Record<SpecialTokenName, ResolvedSpecialToken>
  return { tokenizerClass: { name: className, from: classFrom, defaultsKnown: defaults !== undefined }, tokens, added, files }
}

/**
 * lm-eval's HFLM.prefix_token_id (lm_eval/models/huggingface.py): the custom prefix token when one
 * is given, else tokenizer.bos_token_id when it is not None, else tokenizer.eos_token_id. It is the
 * context of empty-context requests (acc_mutual_info's unconditional terms) and the first input of
 * every loglikelihood_rolling document. Errors: TOKENIZER_INVALID when there is neither.
 */
export function lmEvalPrefixTokenId(dir: string, special: SpecialTokens): number {
  const { bos_token: bos, eos_token: eos } = special.tokens
  const id = bos.id ?? eos.id
  if (id === undefined) {
    fail('TOKENIZER_INVALID', `${dir}: the tokenizer has neither a BOS nor an EOS token (bos_token ${describe(bos)}, eos_token ${describe(eos)}); lm-eval needs one as the prefix of empty contexts. Set "eos_token" (or "bos_token") in tokenizer_config.json.`)
  }
  return id
}

function describe(t: ResolvedSpecialToken): string {
  return t.content === null ? `none (${t.source})` : `${JSON.stringify(t.content)} from ${t.source}, not in the vocabulary and no UNK`
}
