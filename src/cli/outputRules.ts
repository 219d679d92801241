// How the CLI recognises its own output files (so that only those are ever replaced; the rule itself
// lives in src/util/outputPaths.ts) and which models a results store refers to (outputs must stay
// clear of them).
import fs from 'node:fs'
import type { FileRule } from '../util/outputPaths.ts'
import { isHarnessDatabase, type ResultsStore } from '../store/resultsStore.ts'
import type { ResultRow } from '../store/resultRows.ts'

/** The CSV/JSON export columns, in order (the CSV header). */
export const RESULT_COLUMNS = [
  'model', 'model_id', 'method', 'params', 'ratio', 'achieved_ratio', 'variant_id', 'task', 'task_version', 'subset',
  'metric', 'value', 'stderr', 'docs', 'status', 'error', 'device', 'ort_version', 'scoring_key', 'data_sha256',
] as const satisfies readonly (keyof ResultRow)[]

/** How the run was scored and on which data: added 2026-11-30, when a store could hold a cell under several scoring keys. */
const SCORING_COLUMNS: readonly string[] = ['device', 'ort_version', 'scoring_key', 'data_sha256']
/**
 * The columns of exports written before (still ours to replace): without the scoring columns, and before
 * that without 'error' (failed variants/cells were not exported).
 */
const LEGACY_COLUMN_SETS: readonly (readonly string[])[] = [
  RESULT_COLUMNS.filter(c => !SCORING_COLUMNS.includes(c)),
  RESULT_COLUMNS.filter(c => !SCORING_COLUMNS.includes(c) && c !== 'error'),
]

// Compile-time check that RESULT_COLUMNS names every field of ResultRow.
type Missing = Exclude<keyof ResultRow, (typeof RESULT_COLUMNS)[number]>
const _complete: Missing extends never ? true : never = true
void _complete

/** A zero-byte file holds nothing to lose. */
function isEmptyFile(file: string): boolean {
  return fs.statSync(file).size === 0
}

/** Our CSV export: its first line is exactly our header. */
export const CSV_EXPORT: FileRule = {
  what: 'CSV export',
  example: 'results.csv',
  isOurs(file: string): boolean {
    if (isEmptyFile(file)) return true
    const fd = fs.openSync(file, 'r')
    try {
      const head = Buffer.alloc(512)
      const n = fs.readSync(fd, head, 0, head.length, 0)
      const firstLine = head.subarray(0, n).toString('utf8').split(/\r?\n/)[0]
      return [RESULT_COLUMNS, ...LEGACY_COLUMN_SETS].some(columns => firstLine === columns.join(','))
    } finally {
      fs.closeSync(fd)
    }
  },
}

/** Our JSON export: an array whose every element is an object with exactly the export columns. */
export const JSON_EXPORT: FileRule = {
  what: 'JSON export',
  example: 'results.json',
  isOurs(file: string): boolean {
    if (isEmptyFile(file)) return true
    let value: unknown
    try {
      value = JSON.parse(fs.readFileSync(file, 'utf8'))
    } catch {
      return false
    }
    const wanted = [RESULT_COLUMNS, ...LEGACY_COLUMN_SETS].map(columns => [...columns].sort().join(','))
    return Array.isArray(value) && value.every(v => v !== null && typeof v === 'object' && !Array.isArray(v) && wanted.includes(Object.keys(v).sort().join(',')))
  },
}

/** A harness results database (the store's application id or schema), or an empty file. */
export const RESULTS_DATABASE: FileRule = {
  what: 'results database',
  example: 'merged.sqlite',
  isOurs: (file: string): boolean => isEmptyFile(file) || isHarnessDatabase(file),
}

/** The model folders a store's results came from. */
export function modelsOf(store: ResultsStore): string[] {
  return store.storedModels().map(m => m.path).filter(Boolean)
}
