import fs from 'node:fs'
import path from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { fail } from '../errors.ts'

export interface TextTokenizer {
  encode(text: string): number[]
  decode(ids: readonly number[]): string
  /** Token lm-eval puts in front of an empty context: BOS, or EOS when the model has no BOS. */
  prefixTokenId: number
  /** Highest id the tokenizer can produce + 1 (may be below the model's vocab_size). */
  size: number
}

function readJson(file: string, what: string): Record<string, unknown> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    fail('TOKENIZER_INVALID', `${what} ${file} does not parse as JSON: ${(e as Error).message}`)
  }
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content
  return undefined
}

/**
 * Loads tokenizer.json (+ tokenizer_config.json when present) with @huggingface/tokenizers.
 * Text is encoded without special tokens, as lm-eval's HF backend does for causal models.
 */
export function loadTokenizer(dir: string, modelConfig: Record<string, unknown>): TextTokenizer {
  const file = path.join(dir, 'tokenizer.json')
  if (!fs.existsSync(file)) {
    fail('TOKENIZER_INVALID', `No tokenizer.json in ${dir}: copy the checkpoint's tokenizer.json there, or pass token ids with --ids.`)
  }
  const json = readJson(file, 'tokenizer')
  const cfgFile = path.join(dir, 'tokenizer_config.json')
  const tokCfg = fs.existsSync(cfgFile) ? readJson(cfgFile, 'tokenizer config') : {}
  let tok: Tokenizer
  try {
    tok = new Tokenizer(json as never, tokCfg as never)
  } catch (e) {
    fail('TOKENIZER_INVALID', `${file} could not be loaded: ${(e as Error).message}`)
  }
  const byContent = (name: unknown) => {
    const content = tokenContent(name)
    return content === undefined ? undefined : tok.token_to_id(content)
  }
  const bos = byContent(tokCfg.bos_token) ?? (modelConfig.bos_token_id as number | undefined)
  const eos = byContent(tokCfg.eos_token) ?? (Array.isArray(modelConfig.eos_token_id) ? modelConfig.eos_token_id[0] : modelConfig.eos_token_id)
  const prefix = typeof bos === 'number' ? bos : typeof eos === 'number' ? eos : undefined
  if (prefix === undefined) {
    fail('TOKENIZER_INVALID', `${dir}: neither a BOS nor an EOS token is defined (tokenizer_config.json bos_token/eos_token or config.json bos_token_id/eos_token_id); one is needed as the prefix of empty contexts.`)
  }
  const size = tok.get_vocab(true).size
  return {
    encode: text => tok.encode(text, { add_special_tokens: false }).ids,
    decode: ids => (ids.length ? tok.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : ''),
    prefixTokenId: prefix,
    size,
  }
}
