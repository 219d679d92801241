// Finds task files in tasks/, loads their documents, and picks the evaluated subset.
import { DEFAULTS } from '../defaults.ts'
import { fail } from '../errors.ts'
import { loadAllPlugins, loadPlugin, pluginFiles } from '../plugins/discover.ts'
import { defaultDataDir, TASK_DATA_DIR, TASKS_DIR } from '../paths.ts'
import { mulberry32, seedFromString } from '../util/rng.ts'
import { InvalidRecordError, type TaskDefinition } from './defineTask.ts'
import { fileSha256, readRecordFile, resolveDataFile } from './records.ts'
import { checkTaskShape } from './taskShape.ts'

export function taskNames(): string[] {
  return [...pluginFiles(TASKS_DIR).keys()]
}

export async function loadTask(name: string): Promise<TaskDefinition> {
  const task = await loadPlugin<TaskDefinition>('task', TASKS_DIR, name, 'TASK_INVALID')
  return checkTaskShape(task, pluginFiles(TASKS_DIR).get(name) ?? name)
}

export async function loadAllTasks(): Promise<TaskDefinition[]> {
  const tasks = await loadAllPlugins<TaskDefinition>('task', TASKS_DIR, 'TASK_INVALID')
  const files = pluginFiles(TASKS_DIR)
  return tasks.map(t => checkTaskShape(t, files.get(t.name) ?? t.name))
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
  const docs = records.map((record, index) => {
    try {
      return { index, doc: checkRecord(task, record, index) }
    } catch (e) {
      fail('TASK_INVALID', `Task '${task.name}': the record at ${where(index)} is invalid: ${explain(e, task, record, index)}. ` +
        `Fix that record, or use the dataset file the task expects (${task.data.files[0]}).`)
    }
  })
  return { file, sha256: fileSha256(file), docs }
}

/** Thrown by checkPrompt (a prompt of the wrong shape) and by tasks (labelIndex and the like). */
const RecordError = InvalidRecordError

/** A field the task read whose value was null or absent, e.g. { path: 'choices.text[1]', value: null }. */
interface NullRead { path: string; value: null | undefined; absent: boolean }

/**
 * The document of one record, checked: the prompt has the shape of its task kind (checkPrompt), and no
 * field the task read as null or absent ends up in the prompt's text as "null" / "undefined" (which
 * would be scored silently, e.g. ARC's "Question: ${doc.question}" for a record without a question).
 *
 * That second check holds for every task, plugins included, without a declared schema: the record is
 * run again under a watched view (watchRecord) that notes null/absent reads; when there are any, it is
 * run once more with each such field replaced by a unique marker string. A field whose marker reaches
 * the prompt's text while the real prompt holds its "null"/"undefined" was used as text: an error. A
 * field read only to pick a default (`doc.title ?? ''`) or to branch leaves no marker and passes.
 */
function checkRecord<Doc>(task: TaskDefinition<Doc>, record: Record<string, unknown>, index: number): Doc {
  const doc = task.process ? task.process(record, index) : (record as Doc)
  const texts = promptTexts(checkPrompt(task, doc))
  const reads = watchedRun(task, record, index).reads
  if (reads.length === 0) return doc
  const markers = new Map(reads.map((r, i) => [r.path, `\uE000${i}\uE001`]))
  let marked: string[]
  try {
    marked = promptTexts(watchedRun(task, record, index, markers).prompt!)
  } catch {
    return doc // the task rejects a string there (it branched on the value), so the value is not used as text
  }
  const used = reads.filter(r => marked.some(t => t.includes(markers.get(r.path)!)) && texts.some(t => t.includes(String(r.value))))
  if (used.length > 0) throw new RecordError(used.map(r => `field '${r.path}' ${r.absent ? 'is missing' : `is ${r.value}`}, expected a string (the prompt would read "${r.value}")`).join('; '))
  return doc
}

/** process + prompt over a watched view of the record (markers replace the fields they name). */
function watchedRun<Doc>(task: TaskDefinition<Doc>, record: Record<string, unknown>, index: number, markers?: ReadonlyMap<string, string>): { reads: NullRead[]; prompt?: Prompt } {
  const reads: NullRead[] = []
  const watched = watchRecord(record, reads, markers)
  let prompt: Prompt | undefined
  try {
    prompt = task.prompt((task.process ? task.process(watched, index) : watched) as Doc)
  } catch (e) {
    if (markers) throw e
  }
  const seen = new Set<string>()
  return { reads: reads.filter(r => !seen.has(r.path) && seen.add(r.path)), prompt }
}

/**
 * A view of a record (plain objects and arrays, nested) that notes every field read whose value is null
 * or absent, with its path ('choices.text[1]'), and returns `markers`' string for the paths it names.
 */
function watchRecord<T>(value: T, reads: NullRead[], markers?: ReadonlyMap<string, string>, prefix = ''): T {
  if (value === null || typeof value !== 'object') return value
  const isArray = Array.isArray(value)
  const proto = Object.getPrototypeOf(value)
  if (!isArray && proto !== Object.prototype && proto !== null) return value // typed arrays, dates: read as they are
  return new Proxy(value as object, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver)
      if (typeof key !== 'string') return v
      if (isArray && !/^\d+$/.test(key)) return v // length and methods: generic, they read elements through this view
      if (!isArray && (key === 'then' || key === 'toJSON' || (v !== undefined && !Object.hasOwn(target, key)))) return typeof v === 'function' ? v.bind(target) : v
      const path = isArray ? `${prefix}[${key}]` : prefix ? `${prefix}.${key}` : key
      const marker = markers?.get(path)
      if (marker !== undefined) return marker
      if (v === null || v === undefined) reads.push({ path, value: v, absent: !(key in target) })
      return watchRecord(v, reads, markers, path)
    },
  }) as T
}

type Prompt = ReturnType<TaskDefinition['prompt']>

/** Every string of a prompt that is tokenized (context, choices, continuation, text). */
function promptTexts(p: Prompt): string[] {
  const all = [(p as { context?: unknown }).context, (p as { continuation?: unknown }).continuation, (p as { text?: unknown }).text, (p as { countText?: unknown }).countText,
    ...((p as { choices?: unknown[] }).choices ?? []), ...((p as { contexts?: unknown[] }).contexts ?? [])]
  return all.filter((t): t is string => typeof t === 'string')
}

/** The failure's message, plus the null or absent fields the task read (found by re-running it watched). */
function explain<Doc>(e: unknown, task: TaskDefinition<Doc>, record: Record<string, unknown>, index: number): string {
  const why = e instanceof RecordError ? e.message : `the task could not read it (${(e as Error)?.message ?? String(e)})`
  if (e instanceof RecordError && /^field '/.test(e.message)) return why
  const reads = watchedRun(task, record, index).reads
  const missing = reads.map(r => `field '${r.path}' ${r.absent ? 'is missing' : `is ${r.value}`}`).join(', ')
  return missing ? `${missing}; ${why}` : why
}

/**
 * Checks what a document's prompt gives against its task kind (shapes in defineTask.ts): strings
 * where text goes, at least one choice, and gold indices that are integers within the choices.
 */
function checkPrompt(task: TaskDefinition, doc: unknown): Prompt {
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
      return p
    }
    case 'multiple_input': {
      const p = task.prompt(doc)
      text(p.continuation, 'continuation')
      goldIn(p.gold, textList(p.contexts, 'contexts', 1))
      return p
    }
    case 'loglikelihood': {
      const p = task.prompt(doc)
      text(p.context, 'context')
      text(p.continuation, 'continuation')
      if (!p.continuation) throw new RecordError('continuation is empty')
      return p
    }
    case 'rolling': {
      const p = task.prompt(doc)
      text(p.text, 'text')
      if (p.countText !== undefined) text(p.countText, 'countText')
      return p
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
