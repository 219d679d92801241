// The task plugin contract. A task is one file in tasks/ whose default export is made by
// defineTask({...}). Semantics follow lm-evaluation-harness (../shared/docs/evaluation-protocol.md).

/** A multiple-choice item: the choices are continuations of one shared context. */
export interface MultipleChoicePrompt {
  context: string
  choices: readonly string[]
  /** Index of the correct choice (several when any of them counts). */
  gold: number | readonly number[]
}

/** Winogrande-style partial scoring: the choices are contexts and the continuation is shared. */
export interface MultipleInputPrompt {
  contexts: readonly string[]
  continuation: string
  gold: number
}

/** One log-likelihood request (lambada): log p(continuation | context) and whether it is greedy. */
export interface LoglikelihoodPrompt {
  context: string
  continuation: string
}

/** A document scored whole with rolling windows (perplexity tasks). */
export interface RollingPrompt {
  /** Text that is tokenized and scored. */
  text: string
  /** Text whose words and bytes are counted (wikitext counts the original, not the detokenized page). */
  countText?: string
}

export type MetricName =
  | 'acc' | 'acc_norm' | 'acc_bytes' | 'acc_mutual_info' | 'exact_match'
  | 'perplexity'
  | 'word_perplexity' | 'byte_perplexity' | 'bits_per_byte' | 'token_perplexity'

interface TaskBase<Doc> {
  /** kebab-case id, equal to the file name (tasks/<name>.ts). */
  name: string
  /** Bump on ANY change of data, prompt or scoring: the version is part of every stored result's key. */
  version: number
  description: string
  /** Where the documents come from. */
  data: TaskData
  /** Turns a raw record of the data file into a document (defaults to the record itself). */
  process?: (record: Record<string, unknown>, index: number) => Doc
  /** Metrics computed for this task; the first listed is shown when no primary metric is set. */
  metrics: readonly MetricName[]
  /** The metric leaderboards rank by (printed in every table header). */
  primaryMetric: MetricName
  /** Upstream identity, e.g. { upstream: 'arc_easy', dataset: 'allenai/ai2_arc' }. */
  source?: { upstream?: string; dataset?: string; url?: string; license?: string }
  /** Field a stratified subsample is balanced on (default: the gold index for multiple-choice tasks). */
  stratifyBy?: (doc: Doc) => string | number
}

export interface TaskData {
  /**
   * Candidate files, tried in order. Relative names resolve against tasks/data/ for built-in tasks and
   * against the data folder (--data-dir, MOE_HARNESS_DATA, default ./data) otherwise. .jsonl and
   * .parquet are read.
   */
  files: readonly string[]
  /** Whether the data ships with the harness (tasks/data/). */
  builtIn?: boolean
  /** What to download and where to put it, shown when no candidate file exists. */
  howToGet: string
}

export type TaskDefinition<Doc = any> = TaskBase<Doc> & (
  | { kind: 'multiple_choice'; prompt: (doc: Doc) => MultipleChoicePrompt; targetDelimiter?: string }
  | { kind: 'multiple_input'; prompt: (doc: Doc) => MultipleInputPrompt; targetDelimiter?: string }
  | { kind: 'loglikelihood'; prompt: (doc: Doc) => LoglikelihoodPrompt }
  | {
      kind: 'rolling'
      prompt: (doc: Doc) => RollingPrompt
      /** Window of the papers' "token perplexity" convention (default 2048, DEFAULTS.tokenPerplexityWindow; at most the model's context). */
      tokenWindow?: number
    }
)

/** Identity helper that gives task files their types. */
/** The text between a context and its continuation: the task's targetDelimiter, else lm-eval's default target_delimiter ' '. */
export function targetDelimiter(task: TaskDefinition): string {
  return ('targetDelimiter' in task ? task.targetDelimiter : undefined) ?? ' '
}

export function defineTask<Doc = Record<string, unknown>>(task: TaskDefinition<Doc>): TaskDefinition<Doc> {
  return task
}

/**
 * Thrown by a task's process/prompt for a record it cannot use. The harness reports the message with
 * the record's file and line (TASK_INVALID), so say which field is wrong and what it should be.
 */
export class InvalidRecordError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'InvalidRecordError'
  }
}

/**
 * Index of `key` among a record's `labels` (an answer key mapped to its choice, e.g. ARC's answerKey
 * 'C' in labels [A, B, C, D] → 2). Throws InvalidRecordError naming `field` and the labels when the key
 * is not one of them, instead of a gold index of -1.
 */
export function labelIndex(labels: readonly unknown[], key: unknown, field: string): number {
  const i = labels.indexOf(key)
  if (i < 0) throw new InvalidRecordError(`${field} ${typeof key === 'string' ? `'${key}'` : JSON.stringify(key) ?? String(key)} is not one of the labels [${labels.join(', ')}]`)
  return i
}
