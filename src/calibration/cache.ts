// Calibration statistics are cached by (model fingerprint, calibration data fingerprint, settings)
// and reused by every method and ratio. A request for statistics the cache lacks recomputes the
// union in one pass, so a sweep that asks for everything up front calibrates exactly once.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import v8 from 'node:v8'
import { harnessHome } from '../defaults.ts'
import { calibrationKeyOf, STATS_VERSION } from '../identity/keys.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { collectStats, type CollectOptions } from './collect.ts'
import { calibrationFingerprint, calibrationWindows, type CalibrationSpec } from './source.ts'
import { ALL_NEEDS, type StatNeed, type StatsData } from './stats.ts'
import { markUsed } from '../util/lastUse.ts'
import { unwritableReason } from '../util/unwritableFolder.ts'

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
 * A calibration cache entry, or undefined when there is none or it cannot be trusted: unreadable,
 * truncated or changed since it was written (its length and SHA-256 are in its header), not
 * statistics, or recorded under another key than its file name says (a file copied or renamed between
 * models or settings would otherwise hand one model's statistics to another's method). An untrusted
 * entry is recomputed, with a warning, never used: a flipped bit in a Float32Array still deserializes,
 * and a method would prune with wrong statistics and no sign of it.
 *
 * Memory: one buffer of the payload's size (the typed arrays of the result are views into it).
 */
export function readCacheFile(file: string, key: string): StatsData | undefined {
  if (!fs.existsSync(file)) return undefined
  try {
    const { payload, verified } = readPayload(file)
    const data = v8.deserialize(payload) as StatsData
    if (!data || typeof data !== 'object' || !Array.isArray(data.info?.needs)) throw new Error('not calibration statistics')
    if (data.info.key !== key) throw new Error(`it holds the statistics of key ${String(data.info.key)}, not ${key}`)
    // An entry of an earlier harness, without a header, cannot be verified. It is used as those
    // versions used it and stored again with its checksum, so this happens once per entry: treating it
    // as damaged would throw away hours of calibration (at real size) on every entry a user has,
    // almost all intact, for a damage those versions never checked for either. It still passed the
    // checks above (it deserializes to statistics of this key).
    if (!verified) upgradeLegacy(file, payload)
    // A read is a use (src/util/lastUse.ts): `cache prune --calibration --older-than 7d` took statistics reused every day for unused ones.
    markUsed(file)
    return data
  } catch (e) {
    process.stderr.write(`warning: damaged calibration cache ${file} (${(e as Error).message}); recomputing it\n`)
    return undefined
  }
}

// The header of a cache file, then the payload (v8.serialize of StatsData):
//   0  'MOECALIB'  8 bytes, magic; never starts with 0xFF, the first byte of every v8.serialize output
//   8  uint32 LE   format version (FORMAT_VERSION)
//  12  uint32 LE   header length in bytes (HEADER_BYTES)
//  16  uint64 LE   payload length in bytes
//  24  32 bytes    SHA-256 of the payload
//  56  8 bytes     zero
// The payload is read into a buffer of its own (offset 0, as fs.readFileSync gave): v8.deserialize makes
// an aligned typed array a view into the buffer it reads but copies an unaligned one, so reading the
// payload at an offset into the file's buffer could double the memory of GB-sized statistics.
const MAGIC = Buffer.from('MOECALIB', 'latin1')
const FORMAT_VERSION = 1
const HEADER_BYTES = 64
/** The first byte of v8.serialize's output (its version tag): a header-less file of an earlier harness. */
const V8_VERSION_TAG = 0xff
/** Bytes per read or write call: Linux moves at most about 2 GiB per call, and statistics can be larger. */
const IO_CHUNK = 1 << 30

function header(payload: Uint8Array): Buffer {
  const h = Buffer.alloc(HEADER_BYTES)
  MAGIC.copy(h, 0)
  h.writeUInt32LE(FORMAT_VERSION, 8)
  h.writeUInt32LE(HEADER_BYTES, 12)
  h.writeBigUInt64LE(BigInt(payload.byteLength), 16)
  crypto.createHash('sha256').update(payload).digest().copy(h, 24)
  return h
}

/** The payload of cache file `file`, checked against its header; `verified` false for a header-less (legacy) file. Throws, in words, when the file is damaged. */
function readPayload(file: string): { payload: Buffer; verified: boolean } {
  const fd = fs.openSync(file, 'r')
  try {
    const size = fs.fstatSync(fd).size
    if (size === 0) throw new Error('the file is empty')
    const head = Buffer.alloc(Math.min(HEADER_BYTES, size))
    readFully(fd, head, 0)
    if (head[0] === V8_VERSION_TAG) {
      const payload = Buffer.allocUnsafeSlow(size)
      readFully(fd, payload, 0)
      return { payload, verified: false }
    }
    if (size < HEADER_BYTES) throw new Error(`truncated: ${size} bytes, fewer than its ${HEADER_BYTES}-byte header`)
    if (!head.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not a calibration cache file: its header does not begin with MOECALIB')
    const version = head.readUInt32LE(8)
    if (version !== FORMAT_VERSION || head.readUInt32LE(12) !== HEADER_BYTES) throw new Error(`unknown cache file format ${version} (this harness reads format ${FORMAT_VERSION})`)
    const length = head.readBigUInt64LE(16)
    const actual = BigInt(size - HEADER_BYTES)
    if (actual !== length) throw new Error(`${actual < length ? 'truncated' : 'longer than written'}: ${actual} bytes of statistics where its header records ${length}`)
    // A buffer of its own (offset 0), as fs.readFileSync gave: the same typed arrays stay views.
    const payload = Buffer.allocUnsafeSlow(Number(length))
    readFully(fd, payload, HEADER_BYTES)
    const digest = crypto.createHash('sha256').update(payload).digest()
    if (!digest.equals(head.subarray(24, 56))) throw new Error('its bytes changed since it was written: their SHA-256 is not the one its header records')
    return { payload, verified: true }
  } finally {
    fs.closeSync(fd)
  }
}

function readFully(fd: number, into: Buffer, position: number): void {
  for (let done = 0; done < into.length;) {
    const n = fs.readSync(fd, into, done, Math.min(IO_CHUNK, into.length - done), position + done)
    if (n === 0) throw new Error(`truncated while being read: ${done} of ${into.length} bytes`)
    done += n
  }
}

function writeFully(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.byteLength;) done += fs.writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.byteLength - done))
}

let notedLegacy = false

/** Stores a header-less entry again with its header; one that cannot be stored stays as it is (read as a legacy one next time too). */
function upgradeLegacy(file: string, payload: Buffer): void {
  const failed = storeFile(file, payload)
  if (!notedLegacy) {
    process.stderr.write(failed
      ? `note: calibration cache ${file} was written by an earlier harness without a checksum; it is used as before, and could not be stored again with one (${unwritableReason(path.dirname(file), failed.error, failed.folderExisted)}), so damage to it is not detected (this note is given once per run).\n`
      : `note: calibration cache ${file} was written by an earlier harness without a checksum; it is used as before and stored again with one, so that damage to it is caught from now on (this note is given once per run).\n`)
  }
  notedLegacy = true
}

/**
 * Writes `payload` behind its header to `file` through a temp name renamed in, synced first so a
 * crash leaves the old entry or the whole new one (a torn one would be caught, but cost a recompute).
 * No copy of `payload` is made. Returns undefined when stored, else the file system's error and
 * whether the folder was there (found or made) when it happened.
 */
function storeFile(file: string, payload: Uint8Array): { error: unknown; folderExisted: boolean } | undefined {
  // Unique per write, not per process: pods or containers sharing one home all run as pid 1, and two
  // writers of one entry truncated each other's temp file (readers then found it empty or too long).
  // The host lets `cache prune` ask only its own host's processes (src/cache/homeScan.ts).
  const tmp = `${file}.tmp-${os.hostname()}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`
  let folderExisted = false
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true })
    folderExisted = true
    const fd = fs.openSync(tmp, 'w')
    try {
      writeFully(fd, header(payload))
      writeFully(fd, payload)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, file)
    return undefined
  } catch (error) {
    try { fs.rmSync(tmp, { force: true }) } catch { /* no folder to hold it either */ }
    return { error, folderExisted }
  }
}

let warnedUnwritable = false

/**
 * Stores a calibration cache file: a header (length and SHA-256 of `bytes`, checked by readCacheFile)
 * and `bytes` (v8.serialize of StatsData), under a temp name then renamed in. A cache that cannot be
 * written (a read-only, full or missing harness home) costs only the reuse: one warning per process
 * naming the folder and why, and the statistics computed this time are used as they are.
 */
export function writeCacheFile(file: string, bytes: Uint8Array): void {
  const failed = storeFile(file, bytes)
  // Once per process: the one-pass and sequential caches sit in the same home.
  if (failed && !warnedUnwritable) process.stderr.write(`warning: the calibration cache ${path.dirname(file)} cannot be written: ${unwritableReason(path.dirname(file), failed.error, failed.folderExisted)}; statistics are recomputed next time (set MOE_HARNESS_HOME to a writable folder with space to keep them).\n`)
  if (failed) warnedUnwritable = true
}
