// Reads dataset records from local .jsonl or .parquet files (the formats the HF Hub ships).
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet'
import { fail, type ErrorCode } from '../errors.ts'
import { fileError, readRegularFile } from '../util/fileErrors.ts'

/** Records of a data file and where each came from (`file:LINE` for jsonl, `file row N` for parquet). */
export interface RecordFile {
  records: Record<string, unknown>[]
  where(index: number): string
}

/**
 * Reads a .jsonl or .parquet data file. Every jsonl line must be a JSON object; the file must be UTF-8
 * text. Errors name the file and line, with `code` (TASK_INVALID for task data; calibration passes
 * CALIBRATION_FAILED so a broken calibration file is reported as one, whatever its format).
 */
export async function readRecordFile(file: string, code: ErrorCode = 'TASK_INVALID'): Promise<RecordFile> {
  if (file.endsWith('.jsonl')) {
    // A byte-order mark (files saved by some Windows editors) is not part of the first record.
    const text = decodeText(readRegularFile(file, 'read the data file', code), file, code).replace(/^\uFEFF/, '')
    const records: Record<string, unknown>[] = []
    const lines: number[] = []
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return
      let value: unknown
      try {
        value = JSON.parse(line)
      } catch (e) {
        fail(code, `${file}:${i + 1} is not valid JSON (${(e as Error).message}); each line must be one JSON object.`)
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        fail(code, `${file}:${i + 1} is ${describeJson(value)}, not a JSON object; each line must be one record like {"field": ...}.`)
      }
      records.push(value as Record<string, unknown>)
      lines.push(i + 1)
    })
    return { records, where: index => `${file}:${lines[index]}` }
  }
  if (file.endsWith('.parquet')) {
    readRegularFile(file, 'read the data file', code)
    try {
      const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file), rowFormat: 'object' })
      return { records: rows.map(r => normalizeParquet(r) as Record<string, unknown>), where: index => `${file} row ${index}` }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code) throw fileError(e, file, 'read the data file', code)
      fail(code, `${file} could not be read as parquet (${(e as Error).message}); re-download it or convert it to .jsonl.`)
    }
  }
  fail(code, `${file}: unsupported data format (use .jsonl or .parquet).`)
}

function describeJson(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  return `a ${typeof v} (${JSON.stringify(v).slice(0, 40)})`
}

/**
 * Decodes UTF-8 text strictly: invalid UTF-8 or a NUL byte (binary data) is an error naming the file
 * and line, instead of U+FFFD replacement characters flowing silently into prompts or calibration.
 */
export function decodeText(bytes: Uint8Array, file: string, code: Parameters<typeof fail>[0]): string {
  const lineOf = (offset: number) => 1 + bytes.subarray(0, offset).reduce((n, b) => n + (b === 10 ? 1 : 0), 0)
  const nul = bytes.indexOf(0)
  if (nul >= 0) fail(code, `${file}:${lineOf(nul)} contains a NUL byte: it is binary data, not text. Pass a UTF-8 text file.`)
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    // Find the first invalid sequence for the message (the decoder does not say where).
    let lo = 0, hi = bytes.length
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1
      try { new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid)); lo = mid } catch { hi = mid }
    }
    fail(code, `${file}:${lineOf(lo)} is not valid UTF-8 (byte offset ${lo}): it is binary data or another encoding. Convert it to UTF-8 text (e.g. iconv -t UTF-8).`)
  }
}

/** Parquet gives BigInt for int64 columns; datasets use small integers, so make them numbers. */
function normalizeParquet(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v)
  if (Array.isArray(v)) return v.map(normalizeParquet)
  if (v && typeof v === 'object' && !(v instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalizeParquet(x)]))
  }
  return v
}

export function fileSha256(file: string): string {
  return crypto.createHash('sha256').update(readRegularFile(file, 'read the data file', 'TASK_INVALID')).digest('hex')
}

export function resolveDataFile(candidates: readonly string[], baseDir: string): string | undefined {
  for (const c of candidates) {
    const p = path.resolve(baseDir, c)
    if (fs.existsSync(p)) return p
  }
  return undefined
}
