// Calibration text → token windows. Sources: the built-in held-out validation text, a task's
// documents (task:<name>), or any local .txt / .jsonl / .parquet file.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { DEFAULTS, defaultCalibrationLength } from '../defaults.ts'
import { fail } from '../errors.ts'
import type { TextTokenizer } from '../model/tokenizer.ts'
import { TASK_DATA_DIR } from '../paths.ts'
import { decodeText, readRecordFile } from '../tasks/records.ts'
import { readRegularFile } from '../util/fileErrors.ts'
import { loadTask, loadTaskDocs } from '../tasks/registry.ts'
import { targetDelimiter } from '../tasks/defineTask.ts'
import { mulberry32 } from '../util/rng.ts'

export interface CalibrationSpec {
  /** 'builtin' (held-out validation text of the built-in corpora), 'task:<name>', or a file path. */
  source: string
  /** jsonl/parquet field holding the text. */
  field?: string
  sequences: number
  length: number
  seed: number
  /** Data folder of a task:<name> source (the command's --data-dir / config dataDir; default $MOE_HARNESS_DATA or ./data). */
  dataDir?: string
}

export const BUILTIN_CALIBRATION = path.join(TASK_DATA_DIR, 'calibration-validation.jsonl')

/** Papers' defaults (NAEE/Wanda: 128 × 2048), shortened to the model's context when it is smaller. */
export function defaultCalibration(maxPositions: number): CalibrationSpec {
  return { source: DEFAULTS.calibration.source, sequences: DEFAULTS.calibration.sequences, length: defaultCalibrationLength(maxPositions), seed: DEFAULTS.calibration.seed }
}

async function documents(spec: CalibrationSpec): Promise<{ texts: string[]; fingerprint: string }> {
  if (spec.source.startsWith('task:')) {
    const task = await loadTask(spec.source.slice(5))
    const { docs, sha256 } = await loadTaskDocs(task, spec.dataDir)
    const texts = docs.map(({ doc }) => {
      switch (task.kind) {
        case 'rolling': return task.prompt(doc).text
        case 'multiple_choice': {
          const p = task.prompt(doc)
          const gold = Array.isArray(p.gold) ? p.gold[0] : p.gold
          return `${p.context}${targetDelimiter(task)}${p.choices[gold as number]}`
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
  if (!fs.existsSync(file)) fail('CALIBRATION_FAILED', `Calibration source ${file} does not exist; pass --calibration (calibration.source in harness.config.ts) builtin, task:<name>, or a .txt/.jsonl/.parquet file.`)
  if (!/\.(txt|jsonl|parquet)$/.test(file)) fail('CALIBRATION_FAILED', `Calibration source ${file} is not a .txt, .jsonl or .parquet file; pass --calibration (calibration.source in harness.config.ts) builtin, task:<name>, or a file of one of those kinds.`)
  const bytes = readRegularFile(file, 'read the calibration source', 'CALIBRATION_FAILED')
  const sha = crypto.createHash('sha256').update(bytes).digest('hex')
  if (file.endsWith('.txt')) {
    const texts = checkText(decodeText(bytes, file, 'CALIBRATION_FAILED'), file).split(/\n\s*\n/).filter(t => t.trim())
    if (texts.length === 0) fail('CALIBRATION_FAILED', `Calibration source ${file} has no text (it is empty or blank); pass a .txt file with documents separated by blank lines.`)
    return { texts, fingerprint: `file:${sha}` }
  }
  const field = spec.field ?? DEFAULTS.calibration.field
  const { records, where } = await readRecordFile(file, 'CALIBRATION_FAILED')
  if (records.length === 0) fail('CALIBRATION_FAILED', `Calibration source ${file} has no records; pass a file with one {"${field}": "..."} object per line.`)
  const texts = records.map((r, i) => {
    const v = r[field]
    if (typeof v !== 'string') fail('CALIBRATION_FAILED', `${where(i)}: the record has no string field '${field}'; choose the text field with --calibration-field (calibration.field in harness.config.ts).`)
    return checkText(v, where(i))
  })
  return { texts, fingerprint: `file:${sha}:${field}` }
}

/**
 * Decoded UTF-8 can still be binary (random bytes that happen to decode): text has few control
 * characters. More than 1% outside tab/newline/carriage-return/form-feed is refused, naming the file.
 */
function checkText(text: string, where: string): string {
  let control = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 12) || (c >= 0x7f && c < 0xa0) || c === 0xfffd) control++
  }
  if (control > 0.01 * text.length) fail('CALIBRATION_FAILED', `Calibration source ${where} is not text: ${control} of its ${text.length} characters are control characters or replacement marks. Pass a UTF-8 text file.`)
  return text
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
    fail('CALIBRATION_FAILED', `The calibration source has ${stream.length} tokens but ${spec.sequences} × ${spec.length} = ${need} are needed; lower --calibration-sequences or --calibration-length (calibration.sequences / calibration.length in harness.config.ts), or use a larger source.`)
  }
  const windows = Array.from({ length: spec.sequences }, (_, s) => stream.slice(s * spec.length, (s + 1) * spec.length))
  return { windows, fingerprint }
}
