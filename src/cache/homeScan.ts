// What the harness home holds (README "Sweeps and results", the harness home): one entry per thing the harness wrote
// there, recognised only by the names its writers give them (src/edits/variantFolder.ts,
// src/edits/overrideSpill.ts, src/onnx/graphStore.ts, src/calibration/cache.ts and sequential.ts),
// and every other file as 'foreign' (never removed). Reads only: nothing here changes the home.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { isHarnessError } from '../errors.ts'
import { isVariantFolder, readVariantFiles, stagingFolderState } from '../edits/variantFolder.ts'
import { spillFolderState } from '../edits/overrideSpill.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { contentHashOfFolderName, variantFolderName } from '../identity/keys.ts'
import { graphEntryLastUsed, isRemovalAside, STALE_BUILD_MS } from '../onnx/graphStore.ts'
import { describeDatabase, ResultsStore } from '../store/resultsStore.ts'
import { holderIsGone } from '../sweep/leases.ts'
import { processAlive } from '../util/processAlive.ts'
import { fileLastUsed } from '../util/lastUse.ts'
import { diskUsage, usageBytes, type Usage } from './diskUsage.ts'
import { listVariantRecords, VARIANT_INDEX_FOLDER } from '../variants/variantIndex.ts'
import { storesOpenForWriting } from './openStores.ts'
import { variantLastUsed } from '../edits/variantUse.ts'

export type Area = 'variants' | 'graphs' | 'calibration'
export const AREAS: readonly Area[] = ['variants', 'graphs', 'calibration']

/**
 * variant: a prepared variant folder (<16 hex of the model id>-<24 hex content hash>); staging: a
 * publish's staged/set-aside folder; spill: a method's spill folder; graph: a graph cache entry;
 * graph-temp: a graph being built (or a dead build); finite-marker: a checkpoint's NaN/Inf (or
 * float16 range) check marker; calibration / calibration-temp: statistics files (one-pass and sequential) and their
 * temp files; store: a results database (never pruned); foreign: anything else (never removed).
 */
export type EntryKind = 'variant' | 'staging' | 'spill' | 'graph' | 'graph-temp' | 'finite-marker' | 'calibration' | 'calibration-temp' | 'store' | 'foreign'

/**
 * ok: a usable cache entry; damaged: a variant folder whose files do not read back (rebuilt when
 * needed); incomplete: a variant-named folder without its edits file; leftover: a dead process's
 * staging / spill / temp folder; live: a staging / spill / temp item of a running process (or of
 * another host, which cannot be asked); kept: a store or a foreign file.
 */
export type EntryState = 'ok' | 'damaged' | 'incomplete' | 'leftover' | 'live' | 'kept'

export interface CacheEntry {
  area: Area | 'home'
  kind: EntryKind
  /** Absolute path. */
  path: string
  /** Path relative to the home. */
  name: string
  /** Bytes allocated on disk, hard-linked files counted once within the entry. */
  bytes: number
  /**
   * Last use, ms since the epoch: a graph entry's LRU clock (its manifest's mtime); for a variant
   * the later of its edits file's access and modification times (access times are approximate:
   * relatime updates them about once a day), for a calibration entry those of its file (both set
   * explicitly on use); otherwise the modification time.
   */
  lastUsedMs: number
  state: EntryState
  /** Why it is damaged, live or kept, in words. */
  note?: string
  variant?: VariantFacts
  /** Inodes, for totals and freed bytes (not part of the JSON output). */
  usage: Usage
}

export interface VariantFacts {
  contentHash: string
  /** The model folder its edits file names (absent when the folder is damaged). */
  modelDir?: string
  /** What its edits do, from its files: e.g. "4 experts removed in 2 layers, 3 tensors replaced". */
  edits?: string
  /** The variants the known stores record for this folder: "tiny: magnitude-pruning ratio 0.5", parameters that differ from the method's defaults before the ratio ("tiny: magnitude-pruning score=wanda ratio 0.5"). */
  recordedAs: string[]
  /**
   * What the sweeps' index of prepared variants (variants/by-id) records for a folder no store read
   * records: "magnitude-pruning ratio 0.5" (a sweep with any store reuses the folder for it).
   */
  indexedAs?: string[]
  /** The stores (absolute paths) that record a variant with this folder's content. */
  stores: string[]
  /** A live lease of a known store names this folder's content (host:pid:random of its sweep). */
  leasedBy?: string
  /**
   * A running process of this machine is writing a store that records this folder's variant (a
   * sweep reads the folder for each of its cells, leased or not): "pid 123, writing /x/results.sqlite".
   */
  writtenBy?: string
}

export interface HomeScan {
  home: string
  exists: boolean
  entries: CacheEntry[]
  /** Stores whose variants and leases were read (absent / unreadable ones are said in `notes`). */
  stores: string[]
  /** Of `stores`, those running processes of this machine are writing, with their pids (openStores.ts). */
  writing: { store: string; pids: number[] }[]
  notes: string[]
  /** Bytes under the home, every inode once. */
  totalBytes: number
}

const STORE_FILE = /\.(sqlite|sqlite3|db)(-wal|-shm|-journal)?$/
const CALIBRATION_FILE = /^[0-9a-f]{32}\.v8$/
// `<key>.v8.tmp-<host>-<pid>-<random>` (src/calibration/cache.ts); `.tmp-<pid>` alone from earlier versions.
const CALIBRATION_TEMP = /^[0-9a-f]{32}\.v8\.tmp-(?:(.+)-)?(\d+)(?:-[0-9a-f]{8})?$/
const GRAPH_ENTRY = /^[0-9a-f]{32}$/
// Per-checkpoint weight checks under graphs/ (src/onnx/graphStore.ts): NaN/Inf, and float16's range for half-precision runs.
const FINITE_MARKER = /^\.(finite|float16-range)-[0-9a-f]{32}$/
const GRAPH_TEMP = '.building-'
/** A calibration temp file is written and renamed within seconds: one this old, of a gone process, is a leftover. */
const STALE_TEMP_MS = 60 * 60_000

/**
 * Everything under `home`. `stores`: results databases whose variants label the variant folders and
 * whose live leases mark folders in use (a missing one is skipped; an unreadable one is noted).
 * `writers`: databases running processes are writing, by path (default: found in /proc); those that
 * are harness stores are read too, and every variant they record is in use (VariantFacts.writtenBy).
 */
export function scanHome(home: string, stores: readonly string[], now = Date.now(), writers: ReadonlyMap<string, readonly number[]> = storesOpenForWriting()): HomeScan {
  const scan: HomeScan = { home, exists: fs.existsSync(home), entries: [], stores: [], writing: [], notes: [], totalBytes: 0 }
  if (!scan.exists) return scan
  const labels = readStores(stores, writers, scan)
  const add = (area: CacheEntry['area'], kind: EntryKind, full: string, state: EntryState, extra: Partial<CacheEntry> = {}) => {
    const usage = diskUsage(full)
    let mtime = 0
    try { mtime = fs.lstatSync(full).mtimeMs } catch { /* vanished: an eviction */ }
    scan.entries.push({ area, kind, path: full, name: path.relative(home, full), bytes: usageBytes(usage), lastUsedMs: mtime, state, usage, ...extra })
  }
  // An area may be a symbolic link to a folder on a bigger disk: the harness writes through it, so it is
  // listed and pruned through it too (its entries' paths stay under the home), and counted in the total.
  const linkedAreas: string[] = []
  for (const name of readdir(home)) {
    const full = path.join(home, name)
    const area = (AREAS as readonly string[]).includes(name) ? areaDir(full) : undefined
    if (area === 'link') linkedAreas.push(full)
    if (name === 'variants' && area) scanVariants(full, labels, add, now)
    else if (name === 'graphs' && area) scanGraphs(full, add, now)
    else if (name === 'calibration' && area) scanCalibration(full, add, now, true)
    else if (STORE_FILE.test(name) && isStoreFile(full)) add('home', 'store', full, 'kept', { note: 'results database (never pruned)' })
    else add('home', 'foreign', full, 'kept', { note: 'not ours, kept' })
  }
  // A store being written for another home's sweep is not this home's business: only those naming a folder here are listed.
  const named = new Set(scan.entries.flatMap(e => e.variant?.stores ?? []))
  const asked = new Set(stores.map(s => path.resolve(s)))
  scan.stores = scan.stores.filter(s => asked.has(s) || named.has(s))
  scan.writing = scan.writing.filter(w => named.has(w.store))
  scan.totalBytes = usageBytes(diskUsage(home), ...linkedAreas.map(a => diskUsage(`${a}/`)))
  return scan
}

type Add = (area: CacheEntry['area'], kind: EntryKind, full: string, state: EntryState, extra?: Partial<CacheEntry>) => void

interface StoreLabels { recordedAs: Map<string, string[]>; stores: Map<string, string[]>; leases: Map<string, string>; writtenBy: Map<string, string> }

function readStores(stores: readonly string[], writers: ReadonlyMap<string, readonly number[]>, scan: HomeScan): StoreLabels {
  const labels: StoreLabels = { recordedAs: new Map(), stores: new Map(), leases: new Map(), writtenBy: new Map() }
  // A written file that is not a harness store (someone's notes.db) is none of our business: not even noted.
  const written = [...writers.keys()].filter(f => isStoreFile(f))
  for (const file of [...new Set([...stores, ...written].map(s => path.resolve(s)))]) {
    if (!fs.existsSync(file)) continue
    const pids = writers.get(file) ?? [...writers].find(([w]) => samePath(w, file))?.[1]
    let store: ResultsStore
    try {
      store = new ResultsStore(file, { readonly: true })
    } catch (e) {
      scan.notes.push(`store ${file} not read (${isHarnessError(e) ? e.message : (e as Error).message})`)
      continue
    }
    try {
      const defaults = new Map(store.storedMethods().map(m => [m.name, m.params]))
      for (const model of store.storedModels()) {
        for (const v of store.storedVariants(model.id)) {
          if (v.status !== 'ready') continue
          const folder = variantFolderName(model.id, v.contentHash)
          // As the leaderboard names a series: only what differs from the method's defaults (score=wanda).
          const params = Object.entries(v.params).filter(([k, x]) => k !== 'ratio' && defaults.get(v.method)?.[k]?.default !== x).map(([k, x]) => ` ${k}=${x}`).join('')
          const label = `${model.name}: ${v.method}${params} ratio ${v.ratio}`
          if (pids?.length && !labels.writtenBy.has(folder)) labels.writtenBy.set(folder, `pid ${pids.join(', ')}, writing ${file}`)
          const known = labels.recordedAs.get(folder) ?? []
          if (!known.includes(label)) labels.recordedAs.set(folder, [...known, label])
          const inStores = labels.stores.get(folder) ?? []
          if (!inStores.includes(file)) labels.stores.set(folder, [...inStores, file])
        }
      }
      for (const lease of store.liveLeases()) {
        if (!holderIsGone(lease.holder)) labels.leases.set(variantFolderName(lease.modelId, lease.contentHash), lease.holder)
      }
      scan.stores.push(file)
      if (pids?.length) scan.writing.push({ store: file, pids: [...pids] })
    } finally {
      store.close()
    }
  }
  return labels
}

function scanVariants(dir: string, labels: StoreLabels, add: Add, now: number): void {
  const indexed = new Map<string, string[]>()
  const records = listVariantRecords(dir).map(({ folder, record }) => ({ folder, method: record.method, ratio: record.ratio, params: paramsOf(record.params_json) }))
  for (const { folder, method, ratio, params } of records) {
    // The parameters that tell this method's indexed variants apart (the method's defaults are in
    // the stores, not the index): "magnitude-pruning score=wanda ratio 0.5".
    const others = records.filter(r => r.method === method)
    const shown = Object.entries(params).filter(([k, x]) => k !== 'ratio' && others.some(o => JSON.stringify(o.params[k]) !== JSON.stringify(x))).map(([k, x]) => ` ${k}=${x}`).join('')
    const label = `${method}${shown} ratio ${ratio}`
    const known = indexed.get(folder) ?? []
    if (!known.includes(label)) indexed.set(folder, [...known, label])
  }
  for (const name of readdir(dir)) {
    const full = path.join(dir, name)
    if (name === VARIANT_INDEX_FOLDER) continue // the sweep's index of prepared variants by id (src/variants/variantIndex.ts): a few KB, never pruned
    const hash = contentHashOfFolderName(name)
    if (hash !== undefined && isDir(full)) {
      add('variants', 'variant', full, 'ok', variantEntry(full, name, hash, labels, indexed.get(name)))
      continue
    }
    const spill = spillFolderState(name)
    if (spill !== undefined && isDir(full)) {
      add('variants', 'spill', full, spill === 'dead' ? 'leftover' : 'live', { note: spill === 'dead' ? 'spill folder of a process that is gone' : spill === 'live' ? 'spill folder of a running process, kept' : "another host's spill folder (its process cannot be checked), kept" })
      continue
    }
    let staging: 'stale' | 'live' | undefined
    try { staging = stagingFolderState(dir, name, now) } catch { continue /* vanished */ }
    if (staging !== undefined) {
      add('variants', 'staging', full, staging === 'stale' ? 'leftover' : 'live', { note: staging === 'stale' ? 'staging folder of a publish that died' : 'staging folder of a running publish, kept' })
      continue
    }
    add('variants', 'foreign', full, 'kept', { note: 'not ours, kept' })
  }
}

/** A variant folder's facts and state: damaged / incomplete exactly as a sweep would find it (readVariantFiles). */
function variantEntry(full: string, name: string, contentHash: string, labels: StoreLabels, indexedAs: string[] | undefined): Partial<CacheEntry> {
  const variant: VariantFacts = { contentHash, recordedAs: labels.recordedAs.get(name) ?? [], stores: labels.stores.get(name) ?? [] }
  if (!variant.recordedAs.length && indexedAs) variant.indexedAs = indexedAs
  const leasedBy = labels.leases.get(name)
  if (leasedBy) variant.leasedBy = leasedBy
  const writtenBy = labels.writtenBy.get(name)
  if (writtenBy) variant.writtenBy = writtenBy
  const { lastUsedMs, restore } = variantLastUsed(full)
  if (!isVariantFolder(full)) return { state: 'incomplete', note: 'no edits file: an unfinished folder (rebuilt when needed)', variant, lastUsedMs }
  try {
    const { modelDir, edits } = readVariantFiles(full)
    variant.modelDir = modelDir
    variant.edits = describeEdits(edits)
    return { state: 'ok', variant, lastUsedMs, ...(fs.existsSync(modelDir) ? {} : { note: `its model folder ${modelDir} is gone` }) }
  } catch (e) {
    if (!isHarnessError(e)) throw e
    return { state: 'damaged', note: `${e.message.replace(/; delete .*$/, '')} (rebuilt when needed)`, variant, lastUsedMs }
  } finally {
    restore() // our read moved the access time
  }
}

function paramsOf(json: string): Record<string, unknown> {
  try {
    return JSON.parse(json) as Record<string, unknown>
  } catch {
    return {} // an index entry's params are JSON (its digest is checked); none shown otherwise
  }
}

function describeEdits(edits: VariantEdits): string {
  let removed = 0, bound = 0, novices = 0, layers = 0, other = 0
  for (const h of Object.values(edits.layers)) {
    layers++
    removed += h.disabled?.length ?? 0
    bound += Object.keys(h.bindings ?? {}).length
    novices += Object.keys(h.novices ?? {}).length
    if (h.neuronKeep !== undefined || h.skipSecondBeta !== undefined || h.topK !== undefined) other++
  }
  const tensors = Object.keys(edits.overrides).length
  const parts = [
    removed ? `${removed} experts removed` : '', bound ? `${bound} experts merged` : '', novices ? `${novices} novice experts` : '',
    other ? `routing changed in ${other} layers` : '',
  ].filter(Boolean)
  const hooks = parts.length ? `${parts.join(', ')} in ${layers} layers` : ''
  const all = [hooks, tensors ? `${tensors} tensors replaced` : ''].filter(Boolean)
  return all.length ? all.join(', ') : 'no edits (the unedited model)'
}

function scanGraphs(dir: string, add: Add, now: number): void {
  for (const name of readdir(dir)) {
    const full = path.join(dir, name)
    if (GRAPH_ENTRY.test(name) && isDir(full)) {
      const lastUsedMs = graphEntryLastUsed(full)
      if (lastUsedMs !== undefined) add('graphs', 'graph', full, 'ok', { lastUsedMs })
      else add('graphs', 'foreign', full, 'kept', { note: 'no graph-cache manifest: not ours, kept' })
    } else if (name.startsWith(GRAPH_TEMP) && isDir(full)) {
      const removal = isRemovalAside(name)
      const stale = removal || now - mtimeOf(full) > STALE_BUILD_MS
      add('graphs', 'graph-temp', full, stale ? 'leftover' : 'live', { note: removal ? 'an entry set aside for removal by an eviction or prune that did not finish' : stale ? 'graph build folder of a build that died' : 'graph being built, kept' })
    } else if (FINITE_MARKER.test(name) && !isDir(full)) {
      add('graphs', 'finite-marker', full, 'ok', { lastUsedMs: fileLastUsed(full), note: name.startsWith('.finite-') ? 'marks a checkpoint whose weights were checked for NaN/Inf' : 'marks a checkpoint whose weights were checked against float16\'s range' })
    } else {
      add('graphs', 'foreign', full, 'kept', { note: 'not ours, kept' })
    }
  }
}

function scanCalibration(dir: string, add: Add, now: number, top: boolean): void {
  for (const name of readdir(dir)) {
    const full = path.join(dir, name)
    const temp = CALIBRATION_TEMP.exec(name)
    if (top && name === 'sequential' && isDir(full)) scanCalibration(full, add, now, false)
    else if (CALIBRATION_FILE.test(name) && !isDir(full)) add('calibration', 'calibration', full, 'ok', { lastUsedMs: fileLastUsed(full) })
    else if (temp && !isDir(full)) {
      // Its writer is asked only on this host, and not as pid 1 (every container's first process: pods
      // sharing a home through a volume); otherwise its age decides, as a write takes seconds.
      const pid = Number(temp[2])
      const askable = (temp[1] === undefined || temp[1] === os.hostname()) && pid !== 1
      const stale = now - mtimeOf(full) > STALE_TEMP_MS && (!askable || !processAlive(pid))
      add('calibration', 'calibration-temp', full, stale ? 'leftover' : 'live', { note: stale ? 'temp file of a write that died' : 'being written, kept' })
    } else add('calibration', 'foreign', full, 'kept', { note: 'not ours, kept' })
  }
}

function isStoreFile(full: string): boolean {
  const base = full.replace(/-(wal|shm|journal)$/, '')
  if (base !== full) return fs.existsSync(base) && isStoreFile(base)
  try {
    return describeDatabase(full).kind === 'harness'
  } catch {
    return false
  }
}

function readdir(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort()
  } catch {
    return []
  }
}

function samePath(a: string, b: string): boolean {
  try {
    return fs.realpathSync(a) === fs.realpathSync(b)
  } catch {
    return false
  }
}

/** 'dir' for a folder, 'link' for a symbolic link to one, undefined otherwise. */
function areaDir(p: string): 'dir' | 'link' | undefined {
  try {
    const st = fs.lstatSync(p)
    if (st.isDirectory()) return 'dir'
    return st.isSymbolicLink() && fs.statSync(p).isDirectory() ? 'link' : undefined
  } catch {
    return undefined
  }
}

function isDir(p: string): boolean {
  try {
    return fs.lstatSync(p).isDirectory()
  } catch {
    return false
  }
}

function mtimeOf(p: string): number {
  try {
    return fs.lstatSync(p).mtimeMs
  } catch {
    return 0
  }
}
