// Which entries of a scanned harness home a prune removes, and removing them. Only entries the scan
// recognised as ours are ever candidates (stores and foreign files never are); entries a running
// process may be using are kept with the reason. Variant folders go atomically (renamed aside, then
// deleted: src/edits/variantFolder.ts removeVariantFolder), so a concurrent sweep sees a folder whole
// or not at all and rebuilds a missing one.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fail, type HarnessError } from '../errors.ts'
import { removeVariantFolder, stagingFolderState } from '../edits/variantFolder.ts'
import { removeOrphanEntries } from '../variants/variantIndex.ts'
import { spillFolderState } from '../edits/overrideSpill.ts'
import { graphEntryLastUsed, RECENT_MS, REMOVAL_ASIDE } from '../onnx/graphStore.ts'
import { fileError } from '../util/fileErrors.ts'
import { freedBytes } from './diskUsage.ts'
import type { Area, CacheEntry, HomeScan } from './homeScan.ts'
import { variantLastUsed } from '../edits/variantUse.ts'
import { fileLastUsed } from '../util/lastUse.ts'

export interface PruneSelection {
  /** Areas whose entries go (filtered by olderThanMs / modelDir); leftovers of dead processes go in these areas too. Empty: leftovers only, in every area. */
  areas: ReadonlySet<Area>
  /** Only entries not used for this long (ms). */
  olderThanMs?: number
  /** Only the variant folders of this model folder (absolute path). */
  modelDir?: string
  /** Variant folders recorded in these stores (absolute paths) are kept. */
  keepStores?: readonly string[]
  now: number
}

export interface PrunePlan {
  remove: CacheEntry[]
  /** Ours but kept, with the reason (in use, recently used); foreign files and stores are not listed here. */
  kept: { entry: CacheEntry; reason: string }[]
  /** Bytes the removal gives back (inodes whose every link is removed). */
  freedBytes: number
}

/** A variant folder used this recently is kept: a sweep may have published or checked it and be about to score it. */
export const VARIANT_RECENT_MS = RECENT_MS

const LEFTOVER_STATES = new Set(['leftover', 'damaged', 'incomplete'])

/** The entries of `scan` that `sel` removes, and those it keeps although they match, with the reason. */
export function planPrune(scan: HomeScan, sel: PruneSelection): PrunePlan {
  const remove: CacheEntry[] = []
  const kept: PrunePlan['kept'] = []
  for (const e of scan.entries) {
    if (e.area === 'home' || e.kind === 'foreign' || e.kind === 'store') continue
    const areaChosen = sel.areas.size === 0 || sel.areas.has(e.area)
    if (!areaChosen) continue
    if (e.state === 'live') {
      if (sel.areas.size === 0 || matchesFilters(e, sel)) kept.push({ entry: e, reason: e.note ?? 'in use' })
      continue
    }
    // Leftovers of dead processes and damaged folders are rebuilt or never read again: they go
    // whenever their area is pruned, whatever the filters.
    if (LEFTOVER_STATES.has(e.state)) {
      const busy = runningSweep(e)
      if (busy) kept.push({ entry: e, reason: busy })
      else remove.push(e)
      continue
    }
    if (sel.areas.size === 0 || !matchesFilters(e, sel)) continue
    const busy = inUse(e, sel)
    if (busy) kept.push({ entry: e, reason: busy })
    else remove.push(e)
  }
  return { remove, kept, freedBytes: freedBytes(remove.map(e => e.usage)) }
}

function matchesFilters(e: CacheEntry, sel: PruneSelection): boolean {
  if (sel.olderThanMs !== undefined && sel.now - e.lastUsedMs < sel.olderThanMs) return false
  if (sel.modelDir !== undefined && e.area === 'variants') return e.kind === 'variant' && e.variant?.modelDir !== undefined && samePath(e.variant.modelDir, sel.modelDir)
  return true
}

/** The same folder: equal resolved paths, or equal real paths (a symbolic link to it). */
export function samePath(a: string, b: string): boolean {
  if (path.resolve(a) === path.resolve(b)) return true
  try {
    return fs.realpathSync(a) === fs.realpathSync(b)
  } catch {
    return false
  }
}

/** Why a variant folder a running sweep may read must stay: a live lease names it, or a store being written records it. */
function runningSweep(e: CacheEntry): string | undefined {
  if (e.variant?.leasedBy) return `in use by the sweep ${e.variant.leasedBy}`
  if (e.variant?.writtenBy) return `recorded in a store a running process is writing (${e.variant.writtenBy}): a sweep there may score it next`
  return undefined
}

/** Why an entry that matches must stay (in use, recently used, recorded in a --keep-store store), or undefined. */
function inUse(e: CacheEntry, sel: PruneSelection): string | undefined {
  const now = sel.now
  const busy = runningSweep(e)
  if (busy) return busy
  const keptBy = e.variant?.stores.find(s => sel.keepStores?.includes(s))
  if (keptBy) return `recorded in ${keptBy} (--keep-store)`
  if ((e.kind === 'variant' || e.kind === 'graph') && now - e.lastUsedMs < RECENT_MS) return `used in the last ${RECENT_MS / 1000} s (a running sweep may be about to read it)`
  return undefined
}

export interface PruneResult {
  removed: CacheEntry[]
  skipped: { entry: CacheEntry; reason: string }[]
  /** Entries that could not be removed (permissions, read-only file system), with the FILE_ACCESS error. */
  failed: { entry: CacheEntry; error: HarnessError }[]
}

/**
 * Removes the plan's entries, each checked again just before (a staging or spill folder whose
 * process started again, a graph entry used since the scan, stay). An entry that cannot be removed
 * is reported in `failed` (FILE_ACCESS naming it) and the others are still removed.
 */
export function executePrune(plan: PrunePlan, scan: HomeScan): PruneResult {
  const result: PruneResult = { removed: [], skipped: [], failed: [] }
  for (const e of plan.remove) {
    let gone: boolean | string
    try {
      gone = removeEntry(e)
    } catch (err) {
      result.failed.push({ entry: e, error: fileError(err, e.path, `remove ${e.path} (a cache entry under the harness home ${scan.home}; fix its permissions or delete it by hand)`) })
      continue
    }
    if (gone === true) result.removed.push(e)
    else if (typeof gone === 'string') result.skipped.push({ entry: e, reason: gone })
  }
  // The sweeps' by-id index names folders; entries of removed ones would only be skipped later.
  if (plan.remove.some(e => e.kind === 'variant')) removeOrphanEntries(path.join(scan.home, 'variants'))
  return result
}

/** true: removed; false: already gone; a string: kept, and why. */
function removeEntry(e: CacheEntry): boolean | string {
  const parent = path.dirname(e.path)
  const name = path.basename(e.path)
  switch (e.kind) {
    case 'variant':
      // A worker that opened it since the scan marked it (src/edits/variantUse.ts); the scan's decision is stale.
      if (variantLastUsed(e.path).lastUsedMs > e.lastUsedMs) return 'used since the scan'
      return removeVariantFolder(e.path)
    case 'staging':
      if (stagingFolderState(parent, name) !== 'stale') return 'its publish is running again'
      return rm(e.path)
    case 'spill':
      if (spillFolderState(name) !== 'dead') return 'its process is running'
      return rm(e.path)
    case 'graph': {
      const used = graphEntryLastUsed(e.path)
      if (used === undefined) return false
      if (used > e.lastUsedMs) return 'used since the scan'
      // Renamed to a build-folder name first (graphStore evicts dead ones), so a reader finds it whole or not at all.
      const aside = path.join(parent, `${REMOVAL_ASIDE.pruned}${name}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`)
      try {
        fs.renameSync(e.path, aside)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
        throw err
      }
      return rm(aside)
    }
    case 'finite-marker':
    case 'calibration':
      // Read since the scan (the reader marked it, src/util/lastUse.ts): the scan's decision is stale.
      if (fileLastUsed(e.path) > e.lastUsedMs) return 'used since the scan'
      return rm(e.path)
    case 'graph-temp':
    case 'calibration-temp':
      return rm(e.path)
    default:
      return fail('INTERNAL', `cache prune: ${e.path} (${e.kind}) is not removable`)
  }
}

function rm(p: string): boolean {
  if (!fs.existsSync(p)) return false
  fs.rmSync(p, { recursive: true, force: true })
  return true
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000, w: 7 * 86_400_000 }

/** '7d', '12h', '30m', '90s', '2w' (also '1.5d') → ms. Errors: INVALID_ARGUMENT naming the accepted forms. */
export function parseDuration(text: string, flag = '--older-than'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$/.exec(text)
  if (!m) fail('INVALID_ARGUMENT', `${flag} '${text}' is not a duration; use a number and a unit: s (seconds), m (minutes), h (hours), d (days) or w (weeks), e.g. ${flag} 7d or ${flag} 12h.`)
  return Number(m[1]) * UNITS[m[2]!]!
}
