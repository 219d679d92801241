// Calibration text → token windows. Sources: the built-in held-out validation text, a task's
// documents (task:<name>), or any local .txt / .jsonl / .parquet file.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import type { TextTokenizer } from '../model/tokenizer.ts'
import { TASK_DATA_DIR } from '../paths.ts'
import { readRecords } from '../tasks/records.ts'
import { loadTask, loadTaskDocs } from '../tasks/registry.ts'
import { mulberry32 } from '../util/rng.ts'

export interface CalibrationSpec {
  /** 'builtin' (held-out validation text of the built-in corpora), 'task:<name>', or a file path. */
  source: string
  /** jsonl/parquet field holding the text. */
  field?: string
  sequences: number
  length: number
  seed: number
}

export const BUILTIN_CALIBRATION = path.join(TASK_DATA_DIR, 'calibration-validation.jsonl')

/** Papers' defaults (NAEE/Wanda: 128 × 2048), shortened to the model's context when it is smaller. */
export function defaultCalibration(maxPositions: number): CalibrationSpec {
  return { source: 'builtin', sequences: 128, length: Math.min(2048, maxPositions), seed: 42 }
}

async function documents(spec: CalibrationSpec): Promise<{ texts: string[]; fingerprint: string }> {
  if (spec.source.startsWith('task:')) {
    const task = await loadTask(spec.source.slice(5))
    const { docs, sha256 } = await loadTaskDocs(task)
    const texts = docs.map(({ doc }) => {
      switch (task.kind) {
        case 'rolling': return task.prompt(doc).text
        case 'multiple_choice': {
          const p = task.prompt(doc)
          const gold = Array.isArray(p.gold) ? p.gold[0] : p.gold
          return `${p.context}${task.targetDelimiter ?? ' '}${p.choices[gold as number]}`
        }
        case 'multiple_input': {
          const p = task.prompt(doc)
          return `${p.contexts[p.gold]} ${p.continuation}`
        }
        case 'loglikelihood': {
          const p = task.prompt(doc)
          return p.context + p.continuation
        }
      }
    })
    return { texts, fingerprint: `task:${task.name}@${task.version}:${sha256}` }
  }
  const file = spec.source === 'builtin' ? BUILTIN_CALIBRATION : path.resolve(spec.source)
  if (!fs.existsSync(file)) fail('CALIBRATION_FAILED', `Calibration source ${file} does not exist; pass --calibration builtin, task:<name>, or a .txt/.jsonl/.parquet file.`)
  const sha = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')
  if (file.endsWith('.txt')) return { texts: fs.readFileSync(file, 'utf8').split(/\n\s*\n/).filter(t => t.trim()), fingerprint: `file:${sha}` }
  const field = spec.field ?? 'text'
  const records = await readRecords(file)
  const texts = records.map((r, i) => {
    const v = r[field]
    if (typeof v !== 'string') fail('CALIBRATION_FAILED', `${file}: record ${i} has no string field '${field}'; choose it with --calibration-field.`)
    return v
  })
  return { texts, fingerprint: `file:${sha}:${field}` }
}

/** The calibration data's fingerprint alone (no tokenization): part of the statistics' cache key. */
export async function calibrationFingerprint(spec: CalibrationSpec): Promise<string> {
  return (await documents(spec)).fingerprint
}

/**
 * Documents are shuffled with the seed, each is prefixed with the prefix token (as in training),
 * concatenated, and cut into `sequences` windows of `length` tokens.
 */
export async function calibrationWindows(spec: CalibrationSpec, tok: TextTokenizer): Promise<{ windows: number[][]; fingerprint: string }> {
  if (!(spec.sequences >= 1 && spec.length >= 2)) fail('CALIBRATION_FAILED', `Calibration needs at least 1 sequence of 2 tokens (got ${spec.sequences} × ${spec.length}).`)
  const { texts, fingerprint } = await documents(spec)
  const order = texts.map((_, i) => i)
  const rng = mulberry32(spec.seed)
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    ;[order[i], order[j]] = [order[j], order[i]]
  }
  const need = spec.sequences * spec.length
  const stream: number[] = []
  for (const i of order) {
    stream.push(tok.prefixTokenId, ...tok.encode(texts[i]))
    if (stream.length >= need) break
  }
  if (stream.length < need) {
    fail('CALIBRATION_FAILED', `The calibration source has ${stream.length} tokens but ${spec.sequences} × ${spec.length} = ${need} are needed; lower --calibration-sequences or --calibration-length, or use a larger source.`)
  }
  const windows = Array.from({ length: spec.sequences }, (_, s) => stream.slice(s * spec.length, (s + 1) * spec.length))
  return { windows, fingerprint }
}
