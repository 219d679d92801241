// The shape of a task plugin, checked when it is loaded: a task file is run through tsx, which strips
// types without checking them, so a misspelt kind or metric reached evaluate.ts and failed there as a
// record's error ("Cannot read properties of undefined (reading 'context')"), or was dropped silently
// (metrics ['acc', 'acc_nrom'] scored acc only; a primaryMetric the task never computes was printed
// as the primary metric of a table that did not hold it; no version put `undefined` in every run key).
import { fail } from '../errors.ts'
import { closest } from '../util/suggest.ts'
import type { MetricName, TaskDefinition } from './defineTask.ts'

/**
 * The metrics evaluate.ts computes for each kind (computeMetrics reads the predictions each kind
 * produces: acc_norm/acc_bytes/acc_mutual_info exist for multiple_choice only, word/byte counts for
 * rolling only, a greedy flag per choice for exact_match).
 */
export const KIND_METRICS: Readonly<Record<TaskDefinition['kind'], readonly MetricName[]>> = {
  multiple_choice: ['acc', 'acc_norm', 'acc_bytes', 'acc_mutual_info', 'exact_match'],
  multiple_input: ['acc'],
  loglikelihood: ['acc', 'perplexity'],
  rolling: ['word_perplexity', 'byte_perplexity', 'bits_per_byte', 'token_perplexity'],
}

const KINDS = Object.keys(KIND_METRICS)

const hint = (value: unknown, valid: readonly string[]) => {
  const near = typeof value === 'string' ? closest(value, valid) : []
  return near.length ? ` (did you mean ${near.map(v => `'${v}'`).join(', ')}?)` : ''
}

/**
 * TASK_INVALID naming `file` and the field when `task` is not a usable task definition: kind, prompt,
 * version (a positive integer: part of every stored result's key), description, data (files and
 * howToGet), metrics (known for the kind, at least one) and primaryMetric (one of metrics).
 */
export function checkTaskShape(task: TaskDefinition, file: string): TaskDefinition {
  function bad(why: string): never {
    fail('TASK_INVALID', `${file}: ${why}; fix the task's definition (see src/tasks/defineTask.ts).`)
  }
  const t = task as unknown as Record<string, unknown>
  if (typeof t.kind !== 'string' || !KINDS.includes(t.kind)) bad(`kind ${JSON.stringify(t.kind)} is not one of ${KINDS.join(', ')}${hint(t.kind, KINDS)}`)
  if (typeof t.prompt !== 'function') bad('prompt must be a function doc => prompt')
  if (typeof t.version !== 'number' || !Number.isInteger(t.version) || t.version < 1) {
    bad(`version must be a positive integer (it is part of every stored result's key; bump it when the prompt or data changes), got ${JSON.stringify(t.version)}`)
  }
  if (typeof t.description !== 'string' || !t.description.trim()) bad('description must be a sentence (shown by `moe-harness tasks` and on the report\'s task page)')
  const data = t.data as Record<string, unknown> | undefined
  if (!data || typeof data !== 'object' || !Array.isArray(data.files) || data.files.length === 0 || !data.files.every(f => typeof f === 'string' && f.length > 0)) {
    bad('data.files must list at least one data file name (e.g. [\'my-task/test.jsonl\'])')
  }
  if (typeof data.howToGet !== 'string' || !data.howToGet.trim()) bad('data.howToGet must say where the data comes from (shown when the file is missing)')
  const allowed = KIND_METRICS[task.kind]
  if (!Array.isArray(t.metrics) || t.metrics.length === 0) bad(`metrics must list at least one of ${allowed.join(', ')}`)
  for (const m of t.metrics as unknown[]) {
    if (typeof m !== 'string' || !allowed.includes(m as MetricName)) bad(`metric ${JSON.stringify(m)} is not computed for kind '${task.kind}'${hint(m, allowed)}; known: ${allowed.join(', ')}`)
  }
  if (!(t.metrics as unknown[]).includes(t.primaryMetric)) {
    bad(`primaryMetric ${JSON.stringify(t.primaryMetric)} is not one of its metrics (${(t.metrics as string[]).join(', ')})${hint(t.primaryMetric, t.metrics as string[])}`)
  }
  return task
}
