// Tokenization exactly as lm-evaluation-harness does it (TemplateLM._encode_pair,
// HFLM._loglikelihood_tokens and utils.get_rolling_token_windows).
import type { TextTokenizer } from '../model/tokenizer.ts'

export interface EncodedPair { context: number[]; continuation: number[] }

/**
 * Trailing whitespace of the context moves to the continuation; the continuation tokens are the
 * suffix of tok(context + continuation) after len(tok(context)). An empty context becomes the
 * prefix token (BOS, or EOS when there is none).
 */
export function encodePair(tok: TextTokenizer, context: string, continuation: string): EncodedPair {
  if (context === '') return { context: [tok.prefixTokenId], continuation: tok.encode(continuation) }
  const trimmed = context.replace(/\s+$/u, '')
  const moved = context.slice(trimmed.length)
  const ctx = trimmed
  const cont = moved + continuation
  const whole = tok.encode(ctx + cont)
  const contextTokens = tok.encode(ctx)
  return { context: contextTokens, continuation: whole.slice(contextTokens.length) }
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

/** lm-eval's word count: pieces of re.split(r"\s+", text). */
export function countWords(text: string): number {
  return text.split(/\s+/u).length
}

export function countBytes(text: string): number {
  return Buffer.byteLength(text, 'utf8')
}
