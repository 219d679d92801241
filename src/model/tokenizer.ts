import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { fail } from '../errors.ts'
import { readRegularFile } from '../util/fileErrors.ts'
import { lmEvalPrefixTokenId, resolveSpecialTokens, type SpecialTokens } from './specialTokens.ts'

export interface TextTokenizer {
  /** Token ids of `text` without special tokens (tokenizer.encode(text, add_special_tokens=False)). */
  encode(text: string): number[]
  /**
   * Token ids with the tokenizer's default special tokens: what tokenizer.encode(text) gives, i.e.
   * tokenizer.json's post_processor applied (a BOS for Llama-style tokenizers, nothing for Qwen's).
   * This is transformers v5, whose _from_pretrained drops tokenizer_config.json's add_bos_token /
   * add_eos_token whenever tokenizer.json exists; v4's LlamaTokenizerFast rebuilt the post-processor
   * from them instead (the two differ only for folders whose files disagree).
   */
  encodeWithSpecials(text: string): number[]
  decode(ids: readonly number[]): string
  /** Token lm-eval puts in front of an empty context: BOS, or EOS when the model has no BOS (specialTokens.ts). */
  prefixTokenId: number
  /** Highest id the tokenizer can produce + 1 (may be below the model's vocab_size). */
  size: number
}

/** The settings that decide how text becomes scored ids, resolved; part of the model fingerprint. */
export interface TokenizerIdentity {
  /** sha256 of tokenizer.json's bytes. */
  tokenizerJson: string
  /** Each named special token's content and id (not where it came from: that cannot change a score), and the tokens added. */
  special: { tokens: Record<string, { content: string | null; id: number | null }>; added: SpecialTokens['added'] }
  prefixTokenId: number
  /** tokenizer_config.json fields @huggingface/tokenizers reads (decode and pre-tokenization options). */
  options: Record<string, unknown>
}

interface Loaded { json: Record<string, unknown>; tokCfg: Record<string, unknown>; special: SpecialTokens; prefix: number; bytes: Buffer }

// tokenizer_config.json fields the JS tokenizer reads besides the special tokens.
const OPTION_KEYS = ['additional_special_tokens', 'remove_space', 'clean_up_tokenization_spaces', 'do_lowercase_and_remove_accent', 'legacy'] as const

function load(dir: string, modelConfig: Record<string, unknown>): Loaded {
  const file = path.join(dir, 'tokenizer.json')
  if (!fs.existsSync(file)) {
    fail('TOKENIZER_INVALID', `No tokenizer.json in ${dir}: copy the checkpoint's tokenizer.json there, or pass token ids with --ids.`)
  }
  const bytes = readRegularFile(file, 'read the tokenizer', 'TOKENIZER_INVALID')
  let json: Record<string, unknown>
  try {
    json = JSON.parse(bytes.toString('utf8'))
  } catch (e) {
    fail('TOKENIZER_INVALID', `tokenizer ${file} does not parse as JSON: ${(e as Error).message}`)
  }
  const special = resolveSpecialTokens(dir, modelConfig, json)
  const cfgFile = path.join(dir, 'tokenizer_config.json')
  const tokCfg = special.files.includes('tokenizer_config.json') ? JSON.parse(fs.readFileSync(cfgFile, 'utf8')) : {}
  const prefix = lmEvalPrefixTokenId(dir, special)
  const vocabSize = modelConfig.vocab_size
  if (typeof vocabSize === 'number' && prefix >= vocabSize) {
    const token = special.tokens.bos_token.id === prefix ? special.tokens.bos_token : special.tokens.eos_token
    fail('TOKENIZER_INVALID', `${dir}: the prefix token ${JSON.stringify(token.content)} (${token.source}) is not in tokenizer.json, so the tokenizer adds it as id ${prefix}, beyond config.json vocab_size ${vocabSize}; name a token of the vocabulary in tokenizer_config.json.`)
  }
  return { json, tokCfg, special, prefix, bytes }
}

/** The resolved tokenizer settings, without building the tokenizer (cheap enough for fingerprints). */
export function tokenizerIdentity(dir: string, modelConfig: Record<string, unknown>): TokenizerIdentity {
  const { tokCfg, special, prefix, bytes } = load(dir, modelConfig)
  return {
    tokenizerJson: crypto.createHash('sha256').update(bytes).digest('hex'),
    special: {
      tokens: Object.fromEntries(Object.entries(special.tokens).map(([k, t]) => [k, { content: t.content, id: t.id ?? null }])),
      added: special.added,
    },
    prefixTokenId: prefix,
    options: Object.fromEntries(OPTION_KEYS.filter(k => k in tokCfg).map(k => [k, tokCfg[k]])),
  }
}

/**
 * Loads tokenizer.json with @huggingface/tokenizers, with the special tokens transformers would
 * resolve (specialTokens.ts; tokens it would add are added) and lm-eval's prefix token.
 * Errors: TOKENIZER_INVALID naming the file and field.
 */
export function loadTokenizer(dir: string, modelConfig: Record<string, unknown>): TextTokenizer {
  const { json, tokCfg, special, prefix } = load(dir, modelConfig)
  const withAdded = special.added.length
    ? { ...json, added_tokens: [...((json.added_tokens ?? []) as object[]), ...special.added.map(t => ({ id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }))] }
    : json
  let tok: Tokenizer
  try {
    tok = new Tokenizer(withAdded as never, tokCfg as never)
  } catch (e) {
    fail('TOKENIZER_INVALID', `${path.join(dir, 'tokenizer.json')} could not be loaded: ${(e as Error).message}`)
  }
  const size = tok.get_vocab(true).size
  return {
    encode: text => tok.encode(text, { add_special_tokens: false }).ids,
    encodeWithSpecials: text => tok.encode(text, { add_special_tokens: true }).ids,
    decode: ids => (ids.length ? tok.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : ''),
    prefixTokenId: prefix,
    size,
  }
}
