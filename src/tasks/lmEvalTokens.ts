// Tokenization exactly as lm-evaluation-harness does it (TemplateLM._encode_pair, TemplateLM.loglikelihood,
// HFLM.tok_encode, HFLM.loglikelihood_rolling and utils.get_rolling_token_windows), at the commit
// ../shared/docs/evaluation-protocol.md pins. String measurements use Python's semantics (pyString.ts).
import type { TextTokenizer } from '../model/tokenizer.ts'
import { pyLen, pyReSplitWhitespace, pyRstrip } from '../util/pyString.ts'

export interface EncodedPair { context: number[]; continuation: number[] }

/**
 * HFLM.tok_encode(text) for a causal model without an add_bos_token argument: the tokenizer's default
 * encode (special tokens per tokenizer.json's post_processor), except that a text already starting
 * with the decoded prefix token is encoded without special tokens (has_bos_prefix, lm-eval #3347).
 */
const prefixTexts = new WeakMap<TextTokenizer, string>()
export function lmEvalEncode(tok: TextTokenizer, text: string): number[] {
  let prefixText = prefixTexts.get(tok)
  if (prefixText === undefined) prefixTexts.set(tok, (prefixText = tok.decode([tok.prefixTokenId])))
  if (prefixText !== '' && text.startsWith(prefixText)) return tok.encode(text)
  return tok.encodeWithSpecials(text)
}

/**
 * Trailing whitespace of the context (Python's str.rstrip() set) moves to the continuation; the
 * continuation tokens are the suffix of tok(context + continuation) after len(tok(context)).
 * An empty context (TemplateLM.loglikelihood) encodes the continuation without special tokens and
 * takes the prefix token as context, unless the continuation already starts with that token, which
 * then becomes the context.
 */
export function encodePair(tok: TextTokenizer, context: string, continuation: string): EncodedPair {
  if (context === '') {
    const cont = tok.encode(continuation)
    return cont.length && cont[0] === tok.prefixTokenId ? { context: cont.slice(0, 1), continuation: cont.slice(1) } : { context: [tok.prefixTokenId], continuation: cont }
  }
  const ctx = pyRstrip(context)
  const cont = context.slice(ctx.length) + continuation
  const whole = lmEvalEncode(tok, ctx + cont)
  const contextTokens = lmEvalEncode(tok, ctx)
  return { context: contextTokens, continuation: whole.slice(contextTokens.length) }
}

/** The token list HFLM.loglikelihood_rolling cuts into windows: tok_encode(text). */
export function rollingTokens(tok: TextTokenizer, text: string): number[] {
  return lmEvalEncode(tok, text)
}

/**
 * Disjoint rolling windows over a token list (context_len = 1): every token is predicted exactly
 * once; the first window is prefixed with the prefix token. Returns [context, continuation] pairs
 * after lm-eval's make_disjoint_window.
 */
export function rollingWindows(tokens: readonly number[], prefixToken: number, maxSeqLen: number): [number[], number[]][] {
  const windows: [number[], number[]][] = []
  if (tokens.length === 0) return windows
  const predLen = maxSeqLen
  let predicted = 0
  const firstLen = Math.min(maxSeqLen, tokens.length)
  windows.push([[prefixToken, ...tokens.slice(0, firstLen - 1)], tokens.slice(0, firstLen)])
  predicted += firstLen
  while (predicted < tokens.length) {
    const windowPredLen = Math.min(tokens.length - predicted, predLen)
    const windowEnd = predicted + windowPredLen
    windows.push([tokens.slice(windowEnd - maxSeqLen - 1, windowEnd - 1), tokens.slice(windowEnd - windowPredLen, windowEnd)])
    predicted += windowPredLen
  }
  // make_disjoint_window: the context keeps only what is not also predicted.
  return windows.map(([a, b]) => [a.slice(0, a.length - (b.length - 1)), b])
}

/** lm-eval's word count (wikitext process_results, Task.count_words): len(re.split(r"\s+", text)) with Python's \s. */
export function countWords(text: string): number {
  return pyReSplitWhitespace(text).length
}

/** lm-eval's byte count: len(text.encode("utf-8")). */
export function countBytes(text: string): number {
  return Buffer.byteLength(text, 'utf8')
}

/** lm-eval's choice length for acc_norm: len(choice) in code points (Python), not UTF-16 units. */
export function countChars(text: string): number {
  return pyLen(text)
}
