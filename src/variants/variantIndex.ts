// Prepared variants by id, without a results store: one small file per ready variant,
// <home>/variants/by-id/<variant id>.json, naming its folder and holding what a results store records
// of it (the `variants` row). A sweep whose store does not know a variant (a new --db, a shard's file,
// a read-only shared home) looks it up here before running the method: one file read, whatever the
// number of folders. Several ids may name one folder (identical edits); a folder names no id.
//
// An entry is written after its folder is published, to a private temp name renamed into place, so a
// reader sees a whole entry or none and two sweeps writing one id at once leave one of theirs. An
// entry that does not read back exactly (not JSON, a digest mismatch, another id or model, a folder
// name its record does not give) is ignored and the variant prepared again: an entry never leads to a
// folder it does not vouch for. The folder itself is checked by the caller (variantFolderState: its
// edits must hash to the content hash its name carries).
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { variantFolderName } from '../identity/keys.ts'
import { canonicalJson } from '../util/canonicalJson.ts'
import { processAlive } from '../util/processAlive.ts'

/** The index's folder under <home>/variants (`moe-harness cache` lists it). */
export const VARIANT_INDEX_FOLDER = 'by-id'

/**
 * What a results store records of a ready variant: the columns of its `variants` row (src/store/
 * resultsStore.ts VariantRow) a sweep writes on success, less created_at / error_json. Kept in the
 * index as the sweep wrote them, so a store that records a found variant lists it exactly as the store
 * it was prepared for (method, parameters, achieved ratio, accounting, calibration, transform time).
 */
export interface VariantRecord {
  variant_id: string; model_id: string; method: string; params_json: string; ratio: number; achieved_ratio: number | null
  content_hash: string; accounting_json: string | null; report_json: string | null; warnings_json: string | null
  calibration_json: string | null; transform_seconds: number | null; status: 'ready'; error: null
}

interface IndexEntry { format: 1; folder: string; record: VariantRecord; digest: string }

const ID = /^[0-9a-f]{24}$/
const entryFile = (variantsRoot: string, id: string) => path.join(variantsRoot, VARIANT_INDEX_FOLDER, `${id}.json`)
const digestOf = (folder: string, record: VariantRecord) => crypto.createHash('sha256').update(canonicalJson({ folder, record })).digest('hex')

/** The index folder's temp files: <id>.json.tmp-<host>-<pid>-<hex>. */
const TEMP = /\.json\.tmp-(.+)-(\d+)-[0-9a-f]{6}$/
const STALE_FOREIGN_MS = 24 * 3600_000

/**
 * Records `record` (a ready variant whose folder is published under `variantsRoot`) in the index.
 * Throws the file system's error (read-only home, full disk): callers decide whether that matters.
 */
export function recordVariant(variantsRoot: string, record: VariantRecord): void {
  if (!ID.test(record.variant_id)) throw new Error(`not a variant id: ${record.variant_id}`)
  const folder = variantFolderName(record.model_id, record.content_hash)
  const entry: IndexEntry = { format: 1, folder, record, digest: digestOf(folder, record) }
  const file = entryFile(variantsRoot, record.variant_id)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  removeStaleTemps(path.dirname(file))
  const temp = `${file}.tmp-${os.hostname()}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`
  try {
    fs.writeFileSync(temp, `${JSON.stringify(entry, null, 1)}\n`)
    fs.renameSync(temp, file)
  } catch (e) {
    fs.rmSync(temp, { force: true })
    throw e
  }
}

/**
 * The index's record of variant `id` of model `modelId`, and the folder it names (under
 * `variantsRoot`); undefined when there is none or it does not read back exactly (`warn` is told why,
 * naming the file). The folder's own state is not checked here.
 */
export function findVariantRecord(variantsRoot: string, id: string, modelId: string, warn: (message: string) => void): { record: VariantRecord; dir: string } | undefined {
  if (!ID.test(id)) return undefined
  const file = entryFile(variantsRoot, id)
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    return undefined // none (or unreadable: the same, the variant is prepared)
  }
  const why = entryProblem(text, id, modelId)
  if (why) {
    warn(`damaged prepared-variant index entry ${file} (${why}); preparing the variant again`)
    return undefined
  }
  const entry = JSON.parse(text) as IndexEntry
  return { record: entry.record, dir: path.join(variantsRoot, entry.folder) }
}

/**
 * Every entry of the index that reads back exactly, as (folder name, record): what `moe-harness
 * cache` shows for folders no store it read records. Damaged entries are skipped silently (the sweep
 * that needs one warns and rewrites it).
 */
export function listVariantRecords(variantsRoot: string): { folder: string; record: VariantRecord }[] {
  const dir = path.join(variantsRoot, VARIANT_INDEX_FOLDER)
  let names: string[]
  try {
    names = fs.readdirSync(dir)
  } catch {
    return []
  }
  const out: { folder: string; record: VariantRecord }[] = []
  for (const name of names.sort()) {
    const id = name.endsWith('.json') ? name.slice(0, -'.json'.length) : ''
    if (!ID.test(id)) continue
    let text: string
    try {
      text = fs.readFileSync(path.join(dir, name), 'utf8')
      const entry = JSON.parse(text) as IndexEntry
      if (entryProblem(text, id, String(entry?.record?.model_id)) === '') out.push({ folder: entry.folder, record: entry.record })
    } catch { /* unreadable or not JSON: not listed */ }
  }
  return out
}

/**
 * Removes the index entries that name a folder no longer under `variantsRoot` (pruned, or removed by
 * hand): a sweep would prepare those variants again anyway. Returns how many went; best effort.
 */
export function removeOrphanEntries(variantsRoot: string): number {
  let removed = 0
  for (const { folder, record } of listVariantRecords(variantsRoot)) {
    if (fs.existsSync(path.join(variantsRoot, folder))) continue
    try {
      fs.rmSync(entryFile(variantsRoot, record.variant_id), { force: true })
      removed++
    } catch { /* not ours to change: harmless, the entry is checked before use */ }
  }
  return removed
}

/** Why `text` is not a whole entry for variant `id` of model `modelId`, or '' when it is. */
function entryProblem(text: string, id: string, modelId: string): string {
  let entry: IndexEntry
  try {
    entry = JSON.parse(text) as IndexEntry
  } catch (e) {
    return `not JSON: ${(e as Error).message}`
  }
  if (!entry || typeof entry !== 'object' || entry.format !== 1 || typeof entry.folder !== 'string' || !entry.record || typeof entry.record !== 'object') return 'expected {"format": 1, "folder", "record", "digest"}'
  const r = entry.record
  if (entry.digest !== digestOf(entry.folder, r)) return 'its digest does not match its content'
  if (r.variant_id !== id) return `it records variant ${String(r.variant_id)}`
  if (r.model_id !== modelId) return `it records model ${String(r.model_id)}, not ${modelId}`
  if (r.status !== 'ready' || r.error !== null) return 'it does not record a ready variant'
  if (typeof r.content_hash !== 'string' || entry.folder !== variantFolderName(r.model_id, r.content_hash)) return `its folder ${entry.folder} is not the one its record names`
  const strings = ['method', 'params_json'] as const
  const numbers = ['ratio'] as const
  const nullable = { achieved_ratio: 'number', accounting_json: 'string', report_json: 'string', warnings_json: 'string', calibration_json: 'string', transform_seconds: 'number' } as const
  for (const k of strings) if (typeof r[k] !== 'string') return `its record's ${k} is not a string`
  for (const k of numbers) if (typeof r[k] !== 'number') return `its record's ${k} is not a number`
  for (const [k, type] of Object.entries(nullable)) {
    const v = r[k as keyof typeof nullable]
    if (v !== null && typeof v !== type) return `its record's ${k} is not a ${type} or null`
  }
  return ''
}

/** Temp entries of a killed writer: of this host when its process is gone, of another host after a day. */
function removeStaleTemps(dir: string): void {
  const now = Date.now()
  for (const name of fs.readdirSync(dir)) {
    const m = TEMP.exec(name)
    if (!m) continue
    const full = path.join(dir, name)
    try {
      const stale = m[1] === os.hostname() ? !processAlive(Number(m[2])) : now - fs.statSync(full).mtimeMs > STALE_FOREIGN_MS
      if (stale) fs.rmSync(full, { force: true })
    } catch { /* gone already */ }
  }
}
