// Finds task files in tasks/, loads their documents, and picks the evaluated subset.
import { DEFAULTS } from '../defaults.ts'
import { fail } from '../errors.ts'
import { loadAllPlugins, loadPlugin, pluginFiles } from '../plugins/discover.ts'
import { defaultDataDir, TASK_DATA_DIR, TASKS_DIR } from '../paths.ts'
import { mulberry32, seedFromString } from '../util/rng.ts'
import type { TaskDefinition } from './defineTask.ts'
import { fileSha256, readRecordFile, resolveDataFile } from './records.ts'

export function taskNames(): string[] {
  return [...pluginFiles(TASKS_DIR).keys()]
}

export function loadTask(name: string): Promise<TaskDefinition> {
  return loadPlugin<TaskDefinition>('task', TASKS_DIR, name, 'TASK_INVALID')
}

export function loadAllTasks(): Promise<TaskDefinition[]> {
  return loadAllPlugins<TaskDefinition>('task', TASKS_DIR, 'TASK_INVALID')
}

export interface TaskDocs<Doc = unknown> {
  file: string
  sha256: string
  docs: { index: number; doc: Doc }[]
}

export function dataFileOf(task: TaskDefinition, dataDir = defaultDataDir()): string | undefined {
  return resolveDataFile(task.data.files, task.data.builtIn ? TASK_DATA_DIR : dataDir)
}

export async function loadTaskDocs<Doc>(task: TaskDefinition<Doc>, dataDir = defaultDataDir()): Promise<TaskDocs<Doc>> {
  const base = task.data.builtIn ? TASK_DATA_DIR : dataDir
  const file = resolveDataFile(task.data.files, base)
  if (!file) {
    fail('TASK_DATA_MISSING', `Task '${task.name}' has no data: ${task.data.howToGet} Looked for ${task.data.files.map(f => `${base}/${f}`).join(', ')}.` +
      (task.data.builtIn ? '' : ' Pass --data-dir or set MOE_HARNESS_DATA to use another folder.'))
  }
  const { records, where } = await readRecordFile(file)
  if (records.length === 0) {
    fail('TASK_INVALID', `Task '${task.name}': ${file} has no documents (the file is empty or has only blank lines). ${task.data.howToGet}`)
  }
  const docs = records.map((r, index) => {
    const load = (record: Record<string, unknown>, watch: boolean) => {
      const doc = task.process ? task.process(record, index) : (record as Doc)
      checkPrompt(task, watch ? watchMissing(doc) : doc)
      return doc
    }
    try {
      return { index, doc: load(r, false) }
    } catch (e) {
      fail('TASK_INVALID', `Task '${task.name}': the record at ${where(index)} is invalid: ${explain(e, () => load(watchMissing(r), true))}. ` +
        `Fix that record, or use the dataset file the task expects (${task.data.files[0]}).`)
    }
  })
  return { file, sha256: fileSha256(file), docs }
}

/** Thrown by checkPrompt: a prompt of the wrong shape (the message says which part). */
class RecordError extends Error {}

/** Fields read but absent, collected only while a failing record is re-run under watchMissing. */
const missingFields: string[] = []

/**
 * A view of a record that notes every field read but absent (nested objects too), so a TypeError or
 * an `undefined` deep inside a task's process/prompt is reported as "field 'choices.text' is missing".
 */
function watchMissing<T>(value: T, prefix = ''): T {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value
  return new Proxy(value as object, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver)
      if (typeof key !== 'string') return v
      if (Array.isArray(target)) return /^\d+$/.test(key) ? watchMissing(v, `${prefix.replace(/\.$/, '')}[${key}].`) : typeof v === 'function' ? v.bind(target) : v
      if (v === undefined && !(key in target) && key !== 'then' && key !== 'toJSON') missingFields.push(prefix + key)
      return typeof v === 'function' ? v.bind(target) : watchMissing(v, `${prefix}${key}.`)
    },
  }) as T
}

/** The failure's message, plus the fields the record lacks (found by re-running it watched). */
function explain(e: unknown, rerun: () => unknown): string {
  missingFields.length = 0
  try { rerun() } catch { /* the same failure again; only the fields it read matter */ }
  const names = [...new Set(missingFields)]
  missingFields.length = 0
  const missing = names.length ? `${names.length > 1 ? 'fields' : 'field'} ${names.map(n => `'${n}'`).join(', ')} ${names.length > 1 ? 'are' : 'is'} missing` : ''
  const why = e instanceof RecordError ? e.message : `the task could not read it (${(e as Error)?.message ?? String(e)})`
  return missing ? `${missing}; ${why}` : why
}

/**
 * Checks what a document's prompt gives against its task kind (shapes in defineTask.ts): strings
 * where text goes, at least one choice, and gold indices that are integers within the choices.
 */
function checkPrompt(task: TaskDefinition, doc: unknown): void {
  const isText = (v: unknown) => typeof v === 'string'
  const textList = (v: unknown, what: string, min: number) => {
    if (!Array.isArray(v) || v.length < min || !v.every(isText)) throw new RecordError(`${what} must be a list of at least ${min} strings, got ${preview(v)}`)
    return v.length
  }
  const goldIn = (g: unknown, n: number) => {
    const all = Array.isArray(g) ? g : [g]
    if (all.length === 0) throw new RecordError('gold is an empty list')
    for (const x of all) {
      if (x === undefined || x === null) throw new RecordError('it has no gold label')
      if (!Number.isInteger(x) || (x as number) < 0 || (x as number) >= n) throw new RecordError(`gold label ${preview(x)} is out of range (${n} choices: 0 to ${n - 1})`)
    }
  }
  const text = (v: unknown, what: string) => { if (!isText(v)) throw new RecordError(`${what} must be a string, got ${preview(v)}`) }
  switch (task.kind) {
    case 'multiple_choice': {
      const p = task.prompt(doc)
      text(p.context, 'context')
      goldIn(p.gold, textList(p.choices, 'choices', 1))
      return
    }
    case 'multiple_input': {
      const p = task.prompt(doc)
      text(p.continuation, 'continuation')
      goldIn(p.gold, textList(p.contexts, 'contexts', 1))
      return
    }
    case 'loglikelihood': {
      const p = task.prompt(doc)
      text(p.context, 'context')
      text(p.continuation, 'continuation')
      if (!p.continuation) throw new RecordError('continuation is empty')
      return
    }
    case 'rolling': {
      const p = task.prompt(doc)
      text(p.text, 'text')
      if (p.countText !== undefined) text(p.countText, 'countText')
      return
    }
  }
}

function preview(v: unknown): string {
  if (v === undefined) return 'nothing'
  const s = JSON.stringify(v)
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s
}

export interface SubsetSpec {
  /** First N documents (lm-eval --limit); a fraction in (0, 1) takes ceil(fraction × n). */
  limit?: number
  /** A seeded subsample of N documents stratified by the gold answer (the same for every method). */
  sample?: number
  seed?: number
}

/** Canonical text of a subset, part of every stored result's key. */
export function subsetKey(spec: SubsetSpec): string {
  if (spec.sample !== undefined) return `sample:${spec.sample}:seed${spec.seed ?? DEFAULTS.sampleSeed}`
  if (spec.limit !== undefined) return `limit:${spec.limit}`
  return 'all'
}

export function selectDocs<Doc>(task: TaskDefinition<Doc>, docs: { index: number; doc: Doc }[], spec: SubsetSpec): { index: number; doc: Doc }[] {
  if (spec.limit !== undefined && spec.sample !== undefined) fail('INVALID_ARGUMENT', 'Use either --limit or --sample, not both.')
  if (spec.limit !== undefined) {
    if (!(spec.limit > 0)) fail('INVALID_ARGUMENT', `--limit must be positive, got ${spec.limit}.`)
    const n = spec.limit < 1 ? Math.ceil(spec.limit * docs.length) : Math.floor(spec.limit)
    return docs.slice(0, n)
  }
  if (spec.sample !== undefined) {
    if (!Number.isInteger(spec.sample) || spec.sample < 1) fail('INVALID_ARGUMENT', `--sample must be a positive integer, got ${spec.sample}.`)
    return stratifiedSample(task, docs, spec.sample, spec.seed ?? DEFAULTS.sampleSeed)
  }
  return docs
}

function stratumOf<Doc>(task: TaskDefinition<Doc>, doc: Doc): string {
  if (task.stratifyBy) return String(task.stratifyBy(doc))
  if (task.kind === 'multiple_choice' || task.kind === 'multiple_input') return String(task.prompt(doc).gold)
  return 'all'
}

/**
 * Proportional allocation per stratum (largest remainder), each stratum shuffled by a PRNG seeded
 * from (seed, task, stratum); the result keeps dataset order.
 */
function stratifiedSample<Doc>(task: TaskDefinition<Doc>, docs: { index: number; doc: Doc }[], n: number, seed: number) {
  if (n >= docs.length) return docs
  const strata = new Map<string, { index: number; doc: Doc }[]>()
  for (const d of docs) {
    const key = stratumOf(task, d.doc)
    if (!strata.has(key)) strata.set(key, [])
    strata.get(key)!.push(d)
  }
  const keys = [...strata.keys()].sort()
  const quotas = keys.map(k => (n * strata.get(k)!.length) / docs.length)
  const take = quotas.map(Math.floor)
  let left = n - take.reduce((a, b) => a + b, 0)
  const byRemainder = keys.map((_, i) => i).sort((a, b) => quotas[b] - take[b] - (quotas[a] - take[a]) || a - b)
  for (const i of byRemainder) if (left-- > 0) take[i]++
  const chosen: { index: number; doc: Doc }[] = []
  keys.forEach((k, i) => {
    const items = [...strata.get(k)!]
    const rng = mulberry32(seed ^ seedFromString(`${task.name}/${k}`))
    for (let j = items.length - 1; j > 0; j--) {
      const r = Math.floor(rng() * (j + 1))
      ;[items[j], items[r]] = [items[r], items[j]]
    }
    chosen.push(...items.slice(0, take[i]))
  })
  return chosen.sort((a, b) => a.index - b.index)
}

/** Resolves user-given task names (lm-eval spellings like arc_easy accepted) before any work starts. */
export async function resolveTasks(names: readonly string[]): Promise<TaskDefinition[]> {
  const known = new Set(taskNames())
  const resolved = names.map(n => {
    const kebab = n.trim().replaceAll('_', '-')
    return known.has(kebab) ? kebab : n.trim()
  })
  const out: TaskDefinition[] = []
  for (const name of [...new Set(resolved)]) out.push(await loadTask(name))
  return out
}

/** The built-in tasks: what `eval` runs when no --tasks are given. */
export async function builtInTasks(): Promise<TaskDefinition[]> {
  return (await loadAllTasks()).filter(t => t.data.builtIn)
}
