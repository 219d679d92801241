// Turns a task's documents into scoring requests, scores them, and computes lm-eval's metrics.
// Choices of a multiple-choice item share one pass over their context (branches of one request).
import { DEFAULTS } from '../defaults.ts'
import { fail, withContext } from '../errors.ts'
import { packedLength, type ScoreRequest, type ScoreResult } from '../engine/packing.ts'
import type { TextTokenizer } from '../model/tokenizer.ts'
import { targetDelimiter, type MetricName, type TaskDefinition } from './defineTask.ts'
import { countBytes, countChars, countWords, encodePair, rollingTokens, rollingWindows } from './lmEvalTokens.ts'
import { accuracyMetric, argmax, documentPerplexity, weightedPerplexity, type MetricValue } from './metrics.ts'

export interface EvalEnvironment {
  tokenizer: TextTokenizer
  /** Scores requests (in-process session or the worker pool). */
  score: (requests: readonly ScoreRequest[]) => Promise<ScoreResult[]>
  /** Longest model input (lm-eval's max_length). */
  maxLength: number
}

/** Everything needed to recompute any metric of one document without re-running the model. */
export interface SampleRow {
  doc: number
  gold: number | number[] | null
  /** Per-choice log-likelihoods (one entry for loglikelihood/rolling tasks). */
  lls: number[]
  greedy: boolean[]
  llsUnconditional?: number[]
  /** Predictions per accuracy metric. */
  preds: Partial<Record<MetricName, number>>
  /** Tokens, words and bytes scored (rolling tasks). */
  counts?: { tokens: number; words: number; bytes: number }
}

export interface TaskEvaluation {
  metrics: Partial<Record<MetricName, MetricValue>>
  samples: SampleRow[]
  /** Tokens the graph processed, and what per-choice recomputation (lm-eval) would have processed. */
  tokens: { processed: number; perChoiceEquivalent: number }
  /** Why a metric the task lists is absent (one line each, for the user to see: eval prints them, a sweep logs them). */
  notes: string[]
}

interface Plan {
  doc: number
  finish(results: ScoreResult[]): SampleRow
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0)

/** Scores `docs` of `task`; a HarnessError raised on the way (tokenizing, scoring, metrics) carries `task`. */
export async function evaluateTask<Doc>(task: TaskDefinition<Doc>, docs: readonly { index: number; doc: Doc }[], env: EvalEnvironment): Promise<TaskEvaluation> {
  return evaluateDocs(task, docs, env).catch(e => { throw withContext(e, { task: task.name }) })
}

async function evaluateDocs<Doc>(task: TaskDefinition<Doc>, docs: readonly { index: number; doc: Doc }[], env: EvalEnvironment): Promise<TaskEvaluation> {
  const requests: ScoreRequest[] = []
  let perChoice = 0
  // Identical requests (a distractor sentence scored unconditionally for several documents, say) are
  // scored once: the graph's results do not depend on what else is in the batch.
  const seen = new Map<string, number>()
  const add = (r: ScoreRequest) => {
    const key = `${r.prefix.join(',')}|${r.branches.map(b => b.join(',')).join(';')}|${r.scorePrefixFrom ?? ''}`
    const known = seen.get(key)
    if (known !== undefined) return known
    seen.set(key, requests.length)
    requests.push(r)
    return requests.length - 1
  }
  /** One request for a context and its continuations, split per continuation when one would overflow. */
  const contextRequests = (ctx: number[], conts: number[][]): { ids: number[]; read: (rs: ScoreResult[]) => { ll: number[]; greedy: boolean[] } } => {
    for (const c of conts) {
      if (c.length === 0) fail('TASK_INVALID', `${task.name}: a continuation tokenized to nothing; check the task's prompt.`)
      if (c.length > env.maxLength) fail('SEQUENCE_TOO_LONG', `${task.name}: a continuation of ${c.length} tokens exceeds max_length ${env.maxLength}.`)
      perChoice += ctx.length + c.length - 1
    }
    const fits = conts.every(c => ctx.length + c.length - 1 <= env.maxLength)
    if (fits) {
      const id = add({ prefix: ctx, branches: conts })
      return { ids: [id], read: rs => ({ ll: rs[id].branches.map(sum), greedy: rs[id].branchGreedy.map(g => g.every(Boolean)) }) }
    }
    // lm-eval truncates (ctx + cont) from the left to max_length + 1 tokens, per continuation.
    const ids = conts.map(c => {
      const keep = Math.max(1, env.maxLength + 1 - c.length)
      return add({ prefix: ctx.slice(-keep), branches: [c] })
    })
    return { ids, read: rs => ({ ll: ids.map(id => sum(rs[id].branches[0])), greedy: ids.map(id => rs[id].branchGreedy[0].every(Boolean)) }) }
  }

  const wantsPmi = task.metrics.includes('acc_mutual_info')
  const plans: Plan[] = docs.map(({ index, doc }) => {
    switch (task.kind) {
      case 'multiple_choice': {
        const p = task.prompt(doc)
        const delim = targetDelimiter(task)
        const gold = p.gold
        validateGold(task.name, index, gold, p.choices.length)
        const pairs = p.choices.map(c => encodePair(env.tokenizer, p.context, delim + c))
        const cond = contextRequests(pairs[0].context, pairs.map(x => x.continuation))
        // lm-eval's unconditional requests are ("", target_delimiter + choice) (Task.construct_requests).
        // One request per choice, not one shared [BOS] prefix: a choice that recurs in other documents
        // (a shared pool of distractors) is then scored once for all of them.
        const uncond = wantsPmi ? p.choices.map(c => {
          const pair = encodePair(env.tokenizer, '', delim + c)
          return contextRequests(pair.context, [pair.continuation])
        }) : undefined
        return {
          doc: index,
          finish: rs => {
            const { ll, greedy } = cond.read(rs)
            const llsUnconditional = uncond?.map(u => u.read(rs).ll[0])
            const chars = p.choices.map(c => countChars(c))
            const bytes = p.choices.map(c => countBytes(c))
            return {
              doc: index, gold: Array.isArray(gold) ? [...gold] : (gold as number), lls: ll, greedy, llsUnconditional,
              preds: {
                acc: argmax(ll),
                acc_norm: argmax(ll.map((v, i) => v / chars[i])),
                acc_bytes: argmax(ll.map((v, i) => v / bytes[i])),
                ...(llsUnconditional ? { acc_mutual_info: argmax(ll.map((v, i) => v - llsUnconditional[i])) } : {}),
              },
            }
          },
        }
      }
      case 'multiple_input': {
        const p = task.prompt(doc)
        validateGold(task.name, index, p.gold, p.contexts.length)
        const parts = p.contexts.map(ctx => {
          const pair = encodePair(env.tokenizer, ctx, targetDelimiter(task) + p.continuation)
          return contextRequests(pair.context, [pair.continuation])
        })
        return {
          doc: index,
          finish: rs => {
            const ll = parts.map(x => x.read(rs).ll[0])
            const greedy = parts.map(x => x.read(rs).greedy[0])
            return { doc: index, gold: p.gold, lls: ll, greedy, preds: { acc: argmax(ll) } }
          },
        }
      }
      case 'loglikelihood': {
        const p = task.prompt(doc)
        const pair = encodePair(env.tokenizer, p.context, p.continuation)
        const part = contextRequests(pair.context, [pair.continuation])
        return {
          doc: index,
          finish: rs => {
            const { ll, greedy } = part.read(rs)
            return { doc: index, gold: null, lls: ll, greedy, preds: {} }
          },
        }
      }
      case 'rolling': {
        const p = task.prompt(doc)
        const tokens = rollingTokens(env.tokenizer, p.text)
        const ids = rollingWindows(tokens, env.tokenizer.prefixTokenId, env.maxLength).map(([ctx, cont]) => {
          perChoice += ctx.length + cont.length - 1
          return add({ prefix: [...ctx, ...cont], branches: [], scorePrefixFrom: ctx.length })
        })
        const countText = p.countText ?? p.text
        return {
          doc: index,
          finish: rs => ({
            doc: index, gold: null, lls: [sum(ids.map(id => sum(rs[id].prefix)))], greedy: [ids.every(id => rs[id].prefixGreedy.every(Boolean))], preds: {},
            counts: { tokens: tokens.length, words: countWords(countText), bytes: countBytes(countText) },
          }),
        }
      }
    }
  })

  let tokenPerplexity: number | undefined
  let tokenWindowRequests: number[] = []
  const notes: string[] = []
  if (task.kind === 'rolling' && task.metrics.includes('token_perplexity')) {
    // The pruning papers' convention: join the raw documents with "\n\n", tokenize once, cut disjoint
    // windows of `tokenWindow` tokens (remainder dropped); each window's first token is context only.
    // Default 2048, as documented (defineTask.ts): the model's context had been used, so a Qwen3 or
    // DeepSeek model scored one window as long as the whole corpus (up to 163,840 tokens).
    const window = Math.min(task.tokenWindow ?? DEFAULTS.tokenPerplexityWindow, env.maxLength)
    const ids = env.tokenizer.encode(docs.map(d => { const p = task.prompt(d.doc); return p.countText ?? p.text }).join('\n\n'))
    for (let w = 0; w + window <= ids.length; w += window) {
      tokenWindowRequests.push(add({ prefix: ids.slice(w, w + window), branches: [], scorePrefixFrom: 1 }))
    }
    // As GPTQ/Wanda (nsamples = numel // seqlen), a corpus shorter than one window has no token
    // perplexity. A shorter window would not be the papers' number, so it is left out, but said.
    if (!tokenWindowRequests.length && docs.length) notes.push(tokenWindowNote(task.name, docs.length, ids.length, window, task.tokenWindow !== undefined))
  }

  const results = await env.score(requests)
  const samples = plans.map(p => p.finish(results))
  if (tokenWindowRequests.length) {
    const lps = tokenWindowRequests.flatMap(id => results[id].prefix)
    tokenPerplexity = Math.exp(-sum(lps) / lps.length)
  }
  const processed = requests.reduce((n, r) => n + packedLength(r), 0)
  return { metrics: computeMetrics(task, samples, tokenPerplexity), samples, tokens: { processed, perChoiceEquivalent: perChoice }, notes }
}

/** Why token_perplexity is absent: the joined documents are shorter than one window, and what to change. */
function tokenWindowNote(task: string, docs: number, tokens: number, window: number, taskWindow: boolean): string {
  const source = taskWindow ? `the task's tokenWindow` : `the papers' ${DEFAULTS.tokenPerplexityWindow}, at most the model's context`
  return `${task}: token_perplexity not computed: its ${docs} document${docs === 1 ? '' : 's'} joined are ${tokens} tokens, fewer than one ${window}-token window (${source}); `
    + `the other perplexities are scored. Score more documents (a larger or no --limit/--sample, or the config's subset), `
    + `or set a smaller tokenWindow in the task file (the papers use 2048; --max-length also caps it in eval)`
}

function validateGold(task: string, index: number, gold: number | readonly number[], n: number): void {
  const golds = Array.isArray(gold) ? gold : [gold]
  for (const g of golds) {
    if (!Number.isInteger(g) || g < 0 || g >= n) fail('TASK_INVALID', `${task}: document ${index} has gold ${JSON.stringify(gold)} outside its ${n} choices; fix the data or the task's prompt().`)
  }
}

function correct(pred: number, gold: SampleRow['gold']): number {
  if (Array.isArray(gold)) return gold.includes(pred) ? 1 : 0
  return pred === gold ? 1 : 0
}

export function computeMetrics(task: TaskDefinition, samples: readonly SampleRow[], tokenPerplexity?: number): Partial<Record<MetricName, MetricValue>> {
  const out: Partial<Record<MetricName, MetricValue>> = {}
  for (const metric of task.metrics) {
    switch (metric) {
      case 'acc':
        if (task.kind === 'loglikelihood') out.acc = accuracyMetric(samples.map(s => (s.greedy[0] ? 1 : 0)))
        else out.acc = accuracyMetric(samples.map(s => correct(s.preds.acc!, s.gold)))
        break
      case 'acc_norm': case 'acc_bytes': case 'acc_mutual_info':
        out[metric] = accuracyMetric(samples.map(s => correct(s.preds[metric]!, s.gold)))
        break
      case 'exact_match':
        out.exact_match = accuracyMetric(samples.map(s => {
          const golds = Array.isArray(s.gold) ? s.gold : [s.gold as number]
          return golds.some(g => s.greedy[g]) ? 1 : 0
        }))
        break
      case 'perplexity':
        out.perplexity = documentPerplexity(samples.map(s => s.lls[0]))
        break
      case 'word_perplexity': case 'byte_perplexity': case 'bits_per_byte': {
        const weights = samples.map(s => (metric === 'word_perplexity' ? s.counts!.words : s.counts!.bytes))
        const w = weightedPerplexity(samples.map(s => s.lls[0]), weights)
        out[metric] = { value: metric === 'bits_per_byte' ? w.bitsPer : w.perplexity, stderr: null, higherIsBetter: false }
        break
      }
      case 'token_perplexity':
        if (tokenPerplexity !== undefined) out.token_perplexity = { value: tokenPerplexity, stderr: null, higherIsBetter: false }
        break
    }
  }
  return out
}
