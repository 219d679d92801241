// Reads dataset records from local .jsonl or .parquet files (the formats the HF Hub ships).
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet'
import { fail } from '../errors.ts'

export async function readRecords(file: string): Promise<Record<string, unknown>[]> {
  if (file.endsWith('.jsonl')) {
    const lines = fs.readFileSync(file, 'utf8').split('\n')
    const out: Record<string, unknown>[] = []
    lines.forEach((line, i) => {
      if (!line.trim()) return
      try {
        out.push(JSON.parse(line))
      } catch (e) {
        fail('TASK_INVALID', `${file}:${i + 1} is not valid JSON (${(e as Error).message}).`)
      }
    })
    return out
  }
  if (file.endsWith('.parquet')) {
    try {
      const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file), rowFormat: 'object' })
      return rows.map(r => normalizeParquet(r) as Record<string, unknown>)
    } catch (e) {
      fail('TASK_INVALID', `${file} could not be read as parquet: ${(e as Error).message}`)
    }
  }
  fail('TASK_INVALID', `${file}: unsupported data format (use .jsonl or .parquet).`)
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
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')
}

export function resolveDataFile(candidates: readonly string[], baseDir: string): string | undefined {
  for (const c of candidates) {
    const p = path.resolve(baseDir, c)
    if (fs.existsSync(p)) return p
  }
  return undefined
}
