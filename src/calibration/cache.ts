// Calibration statistics are cached by (model fingerprint, calibration data fingerprint, settings)
// and reused by every method and ratio. A request for statistics the cache lacks recomputes the
// union in one pass, so a sweep that asks for everything up front calibrates exactly once.
import fs from 'node:fs'
import path from 'node:path'
import v8 from 'node:v8'
import { harnessHome } from '../defaults.ts'
import { calibrationKeyOf, STATS_VERSION } from '../identity/keys.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { collectStats, type CollectOptions } from './collect.ts'
import { calibrationFingerprint, calibrationWindows, type CalibrationSpec } from './source.ts'
import { ALL_NEEDS, type StatNeed, type StatsData } from './stats.ts'
import { markUsed } from '../util/lastUse.ts'

// STATS_VERSION and the key's derivation live in src/identity/keys.ts.
export { STATS_VERSION }

// The harness's own folder (caches) is a default like any other: src/defaults.ts.
export { harnessHome }

export interface CalibrationResult {
  data: StatsData
  key: string
  fromCache: boolean
}

/** (model fingerprint, calibration data fingerprint, settings) → the cache key. */
export async function calibrationKey(ckpt: Checkpoint, spec: CalibrationSpec): Promise<string> {
  return calibrationKeyOf({ modelId: ckpt.fingerprint(), dataFingerprint: await calibrationFingerprint(spec), sequences: spec.sequences, length: spec.length, seed: spec.seed })
}

export async function getCalibrationStats(ckpt: Checkpoint, spec: CalibrationSpec, needs: readonly StatNeed[], options: CollectOptions & { cacheDir?: string }): Promise<CalibrationResult> {
  const key = await calibrationKey(ckpt, spec)
  const file = cacheFileOf(key, options.cacheDir)
  const cached = readCacheFile(file, key)
  if (cached && needs.every(n => cached!.info.needs.includes(n))) return { data: cached, key, fromCache: true }
  const union = ALL_NEEDS.filter(n => needs.includes(n) || cached?.info.needs.includes(n))
  const { windows, fingerprint } = await calibrationWindows(spec, ckpt.tokenizer())
  const data = await collectStats(ckpt, windows, union, { key, needs: union, sequences: spec.sequences, length: spec.length, source: fingerprint }, options)
  writeCacheFile(file, v8.serialize(data))
  return { data, key, fromCache: false }
}

/** The one-pass cache entry of calibration key `key`. */
const cacheFileOf = (key: string, cacheDir?: string) => path.join(cacheDir ?? harnessHome(), 'calibration', `${key}.v8`)

/** Whether the one-pass calibration cache holds an entry for (ckpt, spec) (its needs unchecked: reading it would cost as much as using it). */
export async function calibrationCached(ckpt: Checkpoint, spec: CalibrationSpec, cacheDir?: string): Promise<boolean> {
  return fs.existsSync(cacheFileOf(await calibrationKey(ckpt, spec), cacheDir))
}

/**
 * A calibration cache entry, or undefined when there is none or it cannot be trusted: unreadable, not
 * statistics, or recorded under another key than its file name says (a file copied or renamed between
 * models or settings would otherwise hand one model's statistics to another's method). An untrusted
 * entry is recomputed, with a warning, never used.
 */
export function readCacheFile(file: string, key: string): StatsData | undefined {
  if (!fs.existsSync(file)) return undefined
  try {
    const data = v8.deserialize(fs.readFileSync(file)) as StatsData
    if (!data || typeof data !== 'object' || !Array.isArray(data.info?.needs)) throw new Error('not calibration statistics')
    if (data.info.key !== key) throw new Error(`it holds the statistics of key ${String(data.info.key)}, not ${key}`)
    // A read is a use (src/util/lastUse.ts): `cache prune --calibration --older-than 7d` took statistics reused every day for unused ones.
    markUsed(file)
    return data
  } catch (e) {
    process.stderr.write(`warning: damaged calibration cache ${file} (${(e as Error).message}); recomputing it\n`)
    return undefined
  }
}

let warnedUnwritable = false

/**
 * Stores a calibration cache file (temp name, then renamed in). A cache that cannot be written (a
 * read-only or full harness home) costs only the reuse: one warning per process, and the statistics
 * computed this time are used as they are.
 */
export function writeCacheFile(file: string, bytes: Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(tmp, bytes)
    fs.renameSync(tmp, file)
  } catch (e) {
    try { fs.rmSync(tmp, { force: true }) } catch { /* no folder to hold it either */ }
    // Once per process: the one-pass and sequential caches sit in the same home.
    if (!warnedUnwritable) process.stderr.write(`warning: the calibration cache ${path.dirname(file)} cannot be written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); statistics are recomputed next time (set MOE_HARNESS_HOME to a writable folder with space to keep them).\n`)
    warnedUnwritable = true
  }
}
