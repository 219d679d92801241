// How long the longest row a task sends to the scoring graph can be, bounded from its documents'
// text without tokenizing, so a sweep sizes its pool (src/pool/memoryFit.ts) by the requests it will
// build rather than by the model's context (163,840 tokens for DeepSeek-V2, which made every sweep of
// such a model plan terabytes of attention per worker and cut the workers to one).
import { DEFAULTS } from '../defaults.ts'
import type { TaskDefinition } from './defineTask.ts'

/**
 * Tokens a tokenizer may add beyond one per UTF-8 byte of a text: the BOS / lm-eval prefix token and a
 * SentencePiece word-start piece, with room to spare.
 */
const ADDED_TOKENS = 4

const bytes = (s: string) => Buffer.byteLength(s, 'utf8')

/**
 * An upper bound on the packed length (src/engine/packing.ts packedLength) of every request
 * evaluateTask builds for `docs` at `maxLength`: byte-level BPE and SentencePiece with byte fallback
 * never give more tokens than UTF-8 bytes (+ ADDED_TOKENS per encoded text). Per kind, as evaluate.ts
 * builds them: a multiple-choice context with all its choices packed in one row (when a choice does not
 * fit, that choice's request is at most maxLength + 1 < the packed row's bound); each context of a
 * multiple-input item with the shared continuation; context + continuation; a rolling document's
 * windows (at most maxLength) and the token-perplexity windows (the task's tokenWindow or
 * DEFAULTS.tokenPerplexityWindow, at most maxLength). Unconditional (PMI) requests are shorter than
 * the conditional ones. 0 for no documents.
 */
export function longestRequestBound(task: TaskDefinition, docs: readonly { doc: unknown }[], maxLength: number): number {
  let longest = 0
  const delim = ('targetDelimiter' in task ? task.targetDelimiter : undefined) ?? ' '
  for (const { doc } of docs) {
    switch (task.kind) {
      case 'multiple_choice': {
        const p = task.prompt(doc)
        longest = Math.max(longest, bytes(p.context) + ADDED_TOKENS + p.choices.reduce((n, c) => n + bytes(delim + c) + ADDED_TOKENS, 0))
        break
      }
      case 'multiple_input': {
        const p = task.prompt(doc)
        const continuation = bytes(delim + p.continuation) + ADDED_TOKENS
        for (const ctx of p.contexts) longest = Math.max(longest, bytes(ctx) + ADDED_TOKENS + continuation)
        break
      }
      case 'loglikelihood': {
        const p = task.prompt(doc)
        longest = Math.max(longest, bytes(p.context) + bytes(p.continuation) + 2 * ADDED_TOKENS)
        break
      }
      case 'rolling': {
        const p = task.prompt(doc)
        longest = Math.max(longest, Math.min(maxLength + 1, bytes(p.text) + ADDED_TOKENS))
        break
      }
    }
  }
  if (task.kind === 'rolling' && task.metrics.includes('token_perplexity') && docs.length) {
    longest = Math.max(longest, Math.min(task.tokenWindow ?? DEFAULTS.tokenPerplexityWindow, maxLength))
  }
  return longest
}
