// A variant's replaced tensors (VariantEdits.overrides), the one owner of their two forms:
// - in memory: a Float32Array of values already rounded to the checkpoint's dtype (what a method
//   gets and sets while it works);
// - stored: the same values in a safetensors file, in the checkpoint's dtype, described by a
//   StoredOverride (file, byte offset, dtype, shape, digest, zero count). A method's edits are
//   stored as they accumulate (overrideSpill.ts), a prepared variant's folder holds them
//   (variantFolder.ts), and the scoring graph maps them from that file like a checkpoint weight
//   (moeGraph.ts WeightLoader): a real-size variant (every expert of OLMoE-1B-7B edited: 13 GB in
//   BF16, 26 GB as float32) is never held in memory whole.
// Both forms of the same values have the same digest (sha256 of the float32 values), which is what
// the variant's content hash is built from (identity/keys.ts editsContentHash).
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import { decodeToFloat32, DTYPE_BYTES, encodeFromFloat32, readSafetensorsHeader, readSafetensorsMetadata, readTensorBytes, writeSafetensors, type DType } from '../model/safetensors.ts'

/** Replaced values in a safetensors file (the checkpoint tensor's shape, flattened or not). */
export interface StoredOverride {
  file: string
  /** Absolute byte offset of the values in `file`. */
  offset: number
  byteLength: number
  dtype: DType
  shape: number[]
  /** sha256 hex of the values as float32 (overrideDigest); absent in files written before it was recorded. */
  digest?: string
  /** How many values are exactly zero (variant accounting); absent like `digest`. */
  zeros?: number
}

export type OverrideTensor = Float32Array | StoredOverride

/** The metadata key under which a stored-overrides file records each tensor's digest and zero count. */
const META_KEY = 'moe-harness.overrides'
interface TensorFacts { sha256: string; zeros: number }

export function isStoredOverride(t: OverrideTensor): t is StoredOverride {
  return !(t instanceof Float32Array)
}

export function overrideNumel(t: OverrideTensor): number {
  return isStoredOverride(t) ? t.byteLength / DTYPE_BYTES[t.dtype] : t.length
}

/** A stored tensor's bytes as written (in its own dtype). */
const storedBytes = (t: StoredOverride) => readTensorBytes({ name: t.file, file: t.file, dtype: t.dtype, shape: t.shape, offset: t.offset, byteLength: t.byteLength })

/** The values as float32 (a fresh copy: callers may modify it). */
export function overrideValues(t: OverrideTensor): Float32Array {
  return isStoredOverride(t) ? decodeToFloat32(storedBytes(t), t.dtype) : t.slice()
}

/** The values' raw bytes in `dtype` (stored bytes as they are when the dtype matches). */
export function overrideBytes(t: OverrideTensor, dtype: DType): Uint8Array {
  if (isStoredOverride(t) && t.dtype === dtype) return storedBytes(t)
  return encodeFromFloat32(isStoredOverride(t) ? overrideValues(t) : t, dtype)
}

const digests = new WeakMap<Float32Array, string>()
const floatBytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)

/** sha256 hex of the values as float32 bytes: equal for the in-memory and stored forms of the same values. */
export function overrideDigest(t: OverrideTensor): string {
  if (isStoredOverride(t)) return t.digest ?? sha256(floatBytes(overrideValues(t)))
  let d = digests.get(t)
  if (!d) digests.set(t, (d = sha256(floatBytes(t))))
  return d
}

/** How many values are exactly zero (±0). */
export function overrideZeros(t: OverrideTensor): number {
  if (isStoredOverride(t) && t.zeros !== undefined) return t.zeros
  const v = isStoredOverride(t) ? overrideValues(t) : t
  let zeros = 0
  for (let i = 0; i < v.length; i++) if (v[i] === 0) zeros++
  return zeros
}

/**
 * What a graph built on `t` depends on, cheaply: the digest for in-memory values; for stored ones the
 * file's identity (path, size, mtime, ctime, inode) and the byte range, so a graph cache lookup never
 * reads gigabytes of overrides back (the same rule as the checkpoint's own files in graphStore.ts).
 */
export function overrideIdentity(t: OverrideTensor): string {
  if (!isStoredOverride(t)) return overrideDigest(t)
  const st = fs.statSync(t.file)
  return sha256(Buffer.from(JSON.stringify({ file: path.resolve(t.file), size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, offset: t.offset, byteLength: t.byteLength, dtype: t.dtype })))
}

/**
 * Writes in-memory overrides to `file` (safetensors, each in `dtypeOf(name)`, with its digest and
 * zero count in the metadata) and returns them as StoredOverrides. Values must already be rounded to
 * that dtype (applyMethod rounds on set), so the stored form decodes to exactly the same float32.
 * Errors: METHOD_FAILED naming the tensor when a value is NaN or infinite.
 */
export function storeOverrides(file: string, tensors: Record<string, Float32Array>, dtypeOf: (name: string) => DType): Record<string, StoredOverride> {
  const facts: Record<string, TensorFacts> = {}
  const toWrite = Object.fromEntries(Object.entries(tensors).map(([name, data]) => {
    let zeros = 0
    for (let i = 0; i < data.length; i++) {
      const v = data[i]
      if (v === 0) zeros++
      else if (!Number.isFinite(v)) fail('METHOD_FAILED', `tensor '${name}' has non-finite values after the method ran.`)
    }
    facts[name] = { sha256: overrideDigest(data), zeros }
    return [name, { dtype: dtypeOf(name), shape: [data.length], data: encodeFromFloat32(data, dtypeOf(name)) }]
  }))
  writeSafetensors(file, toWrite, { format: 'pt', [META_KEY]: JSON.stringify(facts) })
  return readStoredOverrides(file)
}

/** The tensors of a stored-overrides file (header validated against the file), with their recorded digests. */
export function readStoredOverrides(file: string): Record<string, StoredOverride> {
  const entries = readSafetensorsHeader(file)
  let facts: Record<string, TensorFacts> = {}
  try {
    facts = JSON.parse(readSafetensorsMetadata(file)[META_KEY] ?? '{}') as Record<string, TensorFacts>
  } catch {
    facts = {} // digests are recomputed from the values when needed
  }
  return Object.fromEntries(entries.map(e => [e.name, {
    file: e.file, offset: e.offset, byteLength: e.byteLength, dtype: e.dtype, shape: e.shape,
    ...(facts[e.name] ? { digest: facts[e.name].sha256, zeros: facts[e.name].zeros } : {}),
  }]))
}

const sha256 = (bytes: Uint8Array) => crypto.createHash('sha256').update(bytes).digest('hex')
