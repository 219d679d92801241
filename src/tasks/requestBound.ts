// How long the longest row a task sends to the scoring graph can be, bounded from its documents'
// text without tokenizing, so a sweep sizes its pool (src/pool/memoryFit.ts) by the requests it will
// build rather than by the model's context (163,840 tokens for DeepSeek-V2, which made every sweep of
// such a model plan terabytes of attention per worker and cut the workers to one).
import { DEFAULTS } from '../defaults.ts'
import { targetDelimiter, type TaskDefinition } from './defineTask.ts'

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
 * builds them: a multiple-choice context with all its choices packed in one row, longer than maxLength
 * when its choices are long (each fits beside the context, so the row is at most maxLength + the other
 * choices; when one does not fit, every choice goes in its own row of at most maxLength); each context
 * of a multiple-input item with the shared continuation, and context + continuation, at most maxLength
 * (lm-eval truncates them from the left); a rolling document's windows (at most maxLength) and the
 * token-perplexity windows (the task's tokenWindow or DEFAULTS.tokenPerplexityWindow, at most
 * maxLength). Unconditional (PMI) requests are shorter than the conditional ones. 0 for no documents.
 */
export function longestRequestBound(task: TaskDefinition, docs: readonly { doc: unknown }[], maxLength: number): number {
  let longest = 0
  const delim = targetDelimiter(task)
  for (const { doc } of docs) {
    switch (task.kind) {
      case 'multiple_choice': {
        const p = task.prompt(doc)
        const choices = p.choices.map(c => bytes(delim + c) + ADDED_TOKENS)
        const total = choices.reduce((n, c) => n + c, 0)
        // packedLength = context + sum(choice - 1), and each choice fits beside the context (context +
        // choice - 1 <= maxLength), the one of the largest bound too: at most maxLength + the others' choice - 1.
        const fitted = maxLength + total - Math.max(0, ...choices) - Math.max(0, choices.length - 1)
        longest = Math.max(longest, Math.min(bytes(p.context) + ADDED_TOKENS + total, fitted))
        break
      }
      case 'multiple_input': {
        const p = task.prompt(doc)
        const continuation = bytes(delim + p.continuation) + ADDED_TOKENS
        for (const ctx of p.contexts) longest = Math.max(longest, Math.min(maxLength, bytes(ctx) + ADDED_TOKENS + continuation))
        break
      }
      case 'loglikelihood': {
        const p = task.prompt(doc)
        longest = Math.max(longest, Math.min(maxLength, bytes(p.context) + bytes(p.continuation) + 2 * ADDED_TOKENS))
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

/**
 * An upper bound on how many requests evaluateTask builds for `docs` at `maxLength` (before identical
 * ones are merged): the most rows one batch of the task can have, since a task's requests are scored
 * together (src/tasks/evaluate.ts: one env.score call per task) and src/engine/packing.ts planBatches
 * puts each request, with all its branches, in one row. Per document, as evaluate.ts builds them: a
 * multiple-choice item is one request, or one per choice when a choice may not fit beside its context
 * (tok(context + choice) has at most its UTF-8 bytes + ADDED_TOKENS tokens), plus one per choice for
 * acc_mutual_info's unconditional requests; a multiple-input item one per context; a loglikelihood
 * item one; a rolling document one per window of maxLength predicted tokens, and token_perplexity one
 * per whole window of the joined documents. 0 for no documents.
 */
export function requestCountBound(task: TaskDefinition, docs: readonly { doc: unknown }[], maxLength: number): number {
  let count = 0
  const delim = targetDelimiter(task)
  let joinedBytes = 0
  for (const { doc } of docs) {
    switch (task.kind) {
      case 'multiple_choice': {
        const p = task.prompt(doc)
        const widest = Math.max(0, ...p.choices.map(c => bytes(delim + c)))
        count += bytes(p.context) + widest + ADDED_TOKENS - 1 <= maxLength ? 1 : Math.max(1, p.choices.length)
        if (task.metrics.includes('acc_mutual_info')) count += p.choices.length
        break
      }
      case 'multiple_input':
        count += task.prompt(doc).contexts.length
        break
      case 'loglikelihood':
        count += 1
        break
      case 'rolling': {
        const p = task.prompt(doc)
        count += Math.ceil((bytes(p.text) + ADDED_TOKENS) / maxLength)
        joinedBytes += bytes(p.countText ?? p.text)
        break
      }
    }
  }
  if (task.kind === 'rolling' && task.metrics.includes('token_perplexity') && docs.length) {
    const window = Math.min(task.tokenWindow ?? DEFAULTS.tokenPerplexityWindow, maxLength)
    count += Math.floor((joinedBytes + 2 * (docs.length - 1) + ADDED_TOKENS) / window)
  }
  return count
}

/**
 * The bounds over several tasks a pool is sized by (src/pool/memoryFit.ts): the longest request and
 * the most requests any of `tasks` makes of its documents (`docsOf(task name)`) at a model's
 * `maxLength`, each at least 1. The one rule of a local sweep's pool and a Slurm task's memory request.
 */
export function tasksRequestBounds(tasks: readonly TaskDefinition[], docsOf: (name: string) => readonly { doc: unknown }[]): { longestRequest: (maxLength: number) => number; mostRequests: (maxLength: number) => number } {
  return {
    longestRequest: maxLength => Math.max(1, ...tasks.map(t => longestRequestBound(t, docsOf(t.name), maxLength))),
    mostRequests: maxLength => Math.max(1, ...tasks.map(t => requestCountBound(t, docsOf(t.name), maxLength))),
  }
}
