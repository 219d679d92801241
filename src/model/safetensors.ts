// safetensors: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// then raw little-endian bytes. Headers are validated whole at the boundary; tensors are read one at
// a time (a slice of a stacked tensor reads only its bytes); a shard is never read whole.
import fs from 'node:fs'
import { fail } from '../errors.ts'
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat } from '../util/float16.ts'

export type DType = 'F32' | 'F16' | 'BF16'
export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 }

/**
 * Every dtype the safetensors format defines (safetensors' `Dtype` enum), with its size in bits.
 * A file may hold any of them; the engine computes only in F32/F16/BF16, and F8 weights are
 * dequantized on load (see `TensorEntry.fp8`). Other dtypes load header-only and are never decoded.
 */
export const STORED_DTYPE_BITS = {
  BOOL: 8, U8: 8, I8: 8, F8_E4M3: 8, F8_E5M2: 8, F8_E8M0: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, F64: 64, I64: 64, U64: 64, C64: 64,
} as const
export type StoredDType = keyof typeof STORED_DTYPE_BITS
export type Fp8DType = 'F8_E4M3' | 'F8_E5M2'

export function isEngineDType(d: string): d is DType {
  return d === 'F32' || d === 'F16' || d === 'BF16'
}

/** One tensor as a safetensors header describes it, validated against the file. */
export interface StoredTensor {
  name: string
  file: string
  dtype: StoredDType
  shape: number[]
  /** Absolute byte offset of the data in `file`. */
  offset: number
  byteLength: number
}

/**
 * How an F8 weight becomes float32: value × scale_inv of its block, computed in float32 (DeepSeek-V3
 * inference/kernel.py `weight_dequant`; transformers' FineGrainedFP8 with `dequantize=True`). The
 * engine never computes in F8 (onnxruntime's CPU kernels have no F8 GEMM, and scoring is defined
 * on the dequantized weights), so such a weight is presented as an F32 entry.
 */
export interface Fp8Source {
  storedDtype: Fp8DType
  /** The `<weight>_scale_inv` tensor: [gridRows, gridCols] or stacked [matrices, gridRows, gridCols]. */
  scale: StoredTensor
  /** Which quantised matrix of a stacked tensor this entry is (the expert index; 0 for a 2-D weight). */
  matrix: number
  /** First row of this entry inside its quantised matrix (the up half of a fused gate_up_proj starts at F). */
  firstRow: number
  /** weight_block_size [rows, cols] of config.json's quantization_config. */
  block: [number, number]
  gridRows: number
  gridCols: number
}

/**
 * A tensor as the engine sees it: a stored tensor, a contiguous slice of one (an expert of a fused
 * transformers-v5 stack), or an F8 weight dequantized to F32 on read.
 */
export interface TensorEntry {
  name: string
  file: string
  /** The dtype of the bytes `readTensorBytes` returns. */
  dtype: DType
  shape: number[]
  /** Absolute byte offset of the stored data in `file`. */
  offset: number
  /** Stored bytes (for an F8 entry: one byte per element; the decoded F32 bytes are 4×). */
  byteLength: number
  fp8?: Fp8Source
}

/** safetensors' own bound on the header (MAX_HEADER_SIZE in the Rust crate). */
const MAX_HEADER = 100_000_000

function invalid(file: string, message: string): never {
  fail('SAFETENSORS_INVALID', `${file}: ${message}`)
}

/**
 * The top-level keys of a JSON object text, in order, duplicates included (JSON.parse keeps only
 * the last of a duplicated key, which would silently pick one of two tensors). `text` must already
 * parse as a JSON object.
 */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = []
  let i = text.indexOf('{') + 1
  const skipWs = () => { while (i < text.length && /\s/.test(text[i])) i++ }
  const readString = (): string => {
    const start = i
    i++
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1
    i++
    return JSON.parse(text.slice(start, i)) as string
  }
  const skipValue = () => {
    let depth = 0
    for (; i < text.length; i++) {
      const c = text[i]
      if (c === '"') { readString(); i--; continue }
      if (c === '{' || c === '[') depth++
      else if (c === '}' || c === ']') { if (depth === 0) return; depth-- }
      else if (c === ',' && depth === 0) return
    }
  }
  for (;;) {
    skipWs()
    if (text[i] === '}') return keys
    keys.push(readString())
    skipWs()
    i++ // ':'
    skipWs()
    skipValue()
    if (text[i] === ',') i++
  }
}

/**
 * Parses and validates a safetensors file's header (any dtype): header length sane and within the
 * file, a JSON object with unique names, known dtypes, non-negative integer shapes, and data_offsets
 * that are in range, match dtype × shape, and tile the data section exactly (sorted, contiguous, no
 * overlap, no gap), as the reference Rust implementation requires. Errors name the file and tensor.
 */
export function readSafetensorsFile(file: string): StoredTensor[] {
  let fd: number
  try {
    fd = fs.openSync(file, 'r')
  } catch (e) {
    fail('CHECKPOINT_NOT_FOUND', `Cannot open ${file}: ${(e as Error).message}`)
  }
  try {
    const stat = fs.fstatSync(fd)
    if (!stat.isFile()) invalid(file, 'is not a regular file.')
    const size = stat.size
    if (size < 8) invalid(file, `is truncated (${size} bytes; a safetensors file starts with an 8-byte header length): re-download or re-export the checkpoint.`)
    const lenBuf = Buffer.alloc(8)
    fs.readSync(fd, lenBuf, 0, 8, 0)
    const headerLenBig = lenBuf.readBigUInt64LE(0)
    if (headerLenBig > BigInt(size - 8)) {
      invalid(file, `header length ${headerLenBig} exceeds the file size ${size}; the file is truncated or not safetensors.`)
    }
    const headerLen = Number(headerLenBig)
    if (headerLen > MAX_HEADER) invalid(file, `header length ${headerLen} is over safetensors' limit of ${MAX_HEADER} bytes; the file is not safetensors.`)
    if (headerLen < 2) invalid(file, `header length ${headerLen} is too short for a JSON object; the file is not safetensors.`)
    const headerBuf = Buffer.alloc(headerLen)
    fs.readSync(fd, headerBuf, 0, headerLen, 8)
    let text: string
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf)
    } catch {
      invalid(file, 'the header is not valid UTF-8; the file is corrupt or not safetensors.')
    }
    // The reference reader refuses a header whose first byte is not '{' (InvalidHeaderStart).
    if (!text.startsWith('{')) invalid(file, `the header does not start with '{' (it starts with ${JSON.stringify(text.slice(0, 8))}); the file is corrupt or not safetensors.`)
    let header: unknown
    try {
      header = JSON.parse(text)
    } catch (e) {
      invalid(file, `the JSON header does not parse (${(e as Error).message}); the file is corrupt or not safetensors.`)
    }
    if (!header || typeof header !== 'object' || Array.isArray(header)) invalid(file, 'the header is not a JSON object.')
    const seen = new Set<string>()
    for (const k of topLevelKeys(text)) {
      if (seen.has(k)) invalid(file, `the header names tensor '${k}' twice; a reader would silently keep one of them. Re-export the checkpoint.`)
      seen.add(k)
    }
    const meta = (header as Record<string, unknown>).__metadata__
    if (meta !== undefined && (!meta || typeof meta !== 'object' || Array.isArray(meta) || Object.values(meta).some(v => typeof v !== 'string'))) {
      invalid(file, `__metadata__ must be an object of strings (got ${JSON.stringify(meta).slice(0, 80)}).`)
    }
    const dataStart = 8 + headerLen
    const dataSize = size - dataStart
    const entries: (StoredTensor & { begin: number; end: number })[] = []
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') continue
      const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
      if (!info || typeof info !== 'object' || Array.isArray(info)) invalid(file, `entry '${name}' is not an object.`)
      const dtype = info.dtype
      if (typeof dtype !== 'string' || !Object.hasOwn(STORED_DTYPE_BITS, dtype)) {
        invalid(file, `tensor '${name}' has unknown dtype ${JSON.stringify(dtype)} (safetensors dtypes: ${Object.keys(STORED_DTYPE_BITS).join(', ')}).`)
      }
      const shape = info.shape
      if (!Array.isArray(shape) || !shape.every(d => Number.isSafeInteger(d) && d >= 0)) {
        invalid(file, `tensor '${name}' has an invalid shape ${JSON.stringify(shape)}; dimensions must be non-negative integers.`)
      }
      const offs = info.data_offsets
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(o => Number.isSafeInteger(o) && o >= 0) || offs[1] < offs[0]) {
        invalid(file, `tensor '${name}' has invalid data_offsets ${JSON.stringify(offs)}; expected [begin, end] with 0 <= begin <= end.`)
      }
      const [begin, end] = offs as [number, number]
      if (end > dataSize) {
        invalid(file, `tensor '${name}' data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes); the file is truncated or corrupt.`)
      }
      const bits = STORED_DTYPE_BITS[dtype as StoredDType]
      let numel = 1
      for (const d of shape as number[]) numel = Math.min(numel * d, Number.MAX_SAFE_INTEGER)
      const need = (numel * bits) / 8
      if (need !== end - begin) {
        invalid(file, `tensor '${name}' has ${end - begin} bytes (data_offsets [${begin}, ${end}]) but shape ${JSON.stringify(shape)} × ${dtype} needs ${need}.`)
      }
      entries.push({ name, file, dtype: dtype as StoredDType, shape: shape as number[], offset: dataStart + begin, byteLength: end - begin, begin, end })
    }
    const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end)
    let expected = 0
    let prev: (typeof entries)[number] | undefined
    for (const e of sorted) {
      if (e.begin < expected) {
        invalid(file, `tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] overlap tensor '${prev!.name}' [${prev!.begin}, ${prev!.end}]; the two would share bytes. Re-export the checkpoint.`)
      }
      if (e.begin > expected) {
        invalid(file, `tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] leave a gap of ${e.begin - expected} unclaimed bytes before it; tensors must tile the data section. Re-export the checkpoint.`)
      }
      expected = e.end
      prev = e
    }
    if (expected !== dataSize) {
      invalid(file, `the data section has ${dataSize - expected} bytes after the last tensor that no header entry claims; the file is corrupt or was appended to.`)
    }
    return entries.map(({ begin: _b, end: _e, ...t }) => t)
  } finally {
    fs.closeSync(fd)
  }
}

/** A validated header whose tensors must all be engine dtypes (the harness's own files: overrides, novices). */
export function readSafetensorsHeader(file: string): TensorEntry[] {
  return readSafetensorsFile(file).map(t => {
    if (!isEngineDType(t.dtype)) fail('TENSOR_DTYPE', `${file}: tensor '${t.name}' has dtype ${t.dtype}; supported dtypes are F32, F16 and BF16.`)
    return { ...t, dtype: t.dtype }
  })
}

/** The header's `__metadata__` strings ({} when absent); call readSafetensorsFile first to validate the file. */
export function readSafetensorsMetadata(file: string): Record<string, string> {
  const fd = fs.openSync(file, 'r')
  try {
    const lenBuf = Buffer.alloc(8)
    fs.readSync(fd, lenBuf, 0, 8, 0)
    const header = Buffer.alloc(Number(lenBuf.readBigUInt64LE(0)))
    fs.readSync(fd, header, 0, header.length, 8)
    const meta = (JSON.parse(header.toString('utf8')) as { __metadata__?: Record<string, string> }).__metadata__
    return meta ?? {}
  } finally {
    fs.closeSync(fd)
  }
}

function readBytes(file: string, offset: number, length: number, what: string): Buffer {
  const buf = Buffer.alloc(length)
  const fd = fs.openSync(file, 'r')
  try {
    if (readAll(fd, buf, offset) < length) fail('SAFETENSORS_INVALID', `${file}: unexpected end of file reading '${what}'; the file changed or is truncated.`)
  } finally {
    fs.closeSync(fd)
  }
  return buf
}

/**
 * Fills `buf` from the file at `position`, in calls of at most `chunk` bytes (Node refuses reads over
 * 2^31 - 1 bytes: an embedding of 2.35 GB, as Kimi-K2's BF16 embed_tokens, failed with
 * ERR_OUT_OF_RANGE). Returns the bytes read: fewer than buf's length only at the end of the file.
 * `chunk` is for tests.
 */
export function readAll(fd: number, buf: Uint8Array, position: number, chunk = IO_CHUNK): number {
  let done = 0
  while (done < buf.byteLength) {
    const n = fs.readSync(fd, buf, done, Math.min(chunk, buf.byteLength - done), position + done)
    if (n === 0) break
    done += n
  }
  return done
}

/** The entry's bytes in `entry.dtype` (an F8 entry is dequantized to F32 here). */
export function readTensorBytes(entry: TensorEntry | StoredTensor): Buffer {
  const bytes = readBytes(entry.file, entry.offset, entry.byteLength, entry.name)
  const fp8 = (entry as TensorEntry).fp8
  return fp8 ? dequantizeFp8(bytes, entry as TensorEntry, fp8) : bytes
}

function decodeTable(dtype: Fp8DType): Float32Array {
  const table = new Float32Array(256)
  for (let b = 0; b < 256; b++) table[b] = dtype === 'F8_E4M3' ? e4m3ToFloat(b) : e5m2ToFloat(b)
  return table
}
const FP8_TABLES: Partial<Record<Fp8DType, Float32Array>> = {}

function dequantizeFp8(q: Buffer, entry: TensorEntry, src: Fp8Source): Buffer {
  const [rows, cols] = entry.shape
  const [br, bc] = src.block
  const r0 = Math.floor(src.firstRow / br)
  const r1 = Math.floor((src.firstRow + Math.max(rows, 1) - 1) / br)
  const scaleBytes = STORED_DTYPE_BITS[src.scale.dtype] / 8
  const start = (src.matrix * src.gridRows + r0) * src.gridCols
  const count = (r1 - r0 + 1) * src.gridCols
  const rawScale = readBytes(src.scale.file, src.scale.offset + start * scaleBytes, count * scaleBytes, src.scale.name)
  const scale = decodeToFloat32(rawScale, src.scale.dtype as DType)
  const table = (FP8_TABLES[src.storedDtype] ??= decodeTable(src.storedDtype))
  const out = new Float32Array(rows * cols)
  for (let r = 0; r < rows; r++) {
    const sRow = (Math.floor((src.firstRow + r) / br) - r0) * src.gridCols
    for (let c = 0; c < cols; c++) {
      // Both factors are float32 and their double product is exact, so fround is float32 multiplication.
      out[r * cols + c] = Math.fround(table[q[r * cols + c]] * scale[sRow + Math.floor(c / bc)])
    }
  }
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength)
}

/** float8 e4m3fn (no infinities; S.1111.111 is NaN; max 448), as torch.float8_e4m3fn. */
export function e4m3ToFloat(b: number): number {
  const sign = b & 0x80 ? -1 : 1
  const e = (b >> 3) & 0xf
  const m = b & 7
  if (e === 15 && m === 7) return NaN
  return e === 0 ? sign * (m / 8) * 2 ** -6 : sign * (1 + m / 8) * 2 ** (e - 7)
}

/** float8 e5m2 (IEEE-like: infinities and NaN at exponent 31), as torch.float8_e5m2. */
export function e5m2ToFloat(b: number): number {
  const sign = b & 0x80 ? -1 : 1
  const e = (b >> 2) & 0x1f
  const m = b & 3
  if (e === 31) return m ? NaN : sign * Infinity
  return e === 0 ? sign * (m / 4) * 2 ** -14 : sign * (1 + m / 4) * 2 ** (e - 15)
}

/** Nearest float8 e4m3fn byte (round half to even, saturating at ±448; NaN → 0x7f). For writers and tests. */
export function floatToE4m3(x: number): number {
  if (Number.isNaN(x)) return 0x7f
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0
  const a = Math.min(Math.abs(x), 448)
  // The 127 non-negative finite codes are increasing in value: binary-search the neighbours.
  let lo = 0, hi = 0x7e
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1
    if (e4m3ToFloat(mid) <= a) lo = mid
    else hi = mid
  }
  const dl = a - e4m3ToFloat(lo), dh = e4m3ToFloat(hi) - a
  const code = dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi
  return sign | code
}

/** Number of NaN and ±Inf values in raw bytes of an engine dtype (bit tests, no decoding). */
export function countNonFinite(bytes: Uint8Array, dtype: DType): { nan: number; inf: number } {
  let nan = 0, inf = 0
  if (dtype === 'F32') {
    const a = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes)
    const u = new Uint32Array(a.buffer, a.byteOffset, a.byteLength >> 2)
    for (let i = 0; i < u.length; i++) {
      if ((u[i] & 0x7f800000) === 0x7f800000) { if (u[i] & 0x7fffff) nan++; else inf++ }
    }
  } else {
    const a = bytes.byteOffset % 2 === 0 ? bytes : new Uint8Array(bytes)
    const u = new Uint16Array(a.buffer, a.byteOffset, a.byteLength >> 1)
    const [expMask, mantMask] = dtype === 'F16' ? [0x7c00, 0x3ff] : [0x7f80, 0x7f]
    for (let i = 0; i < u.length; i++) {
      if ((u[i] & expMask) === expMask) { if (u[i] & mantMask) nan++; else inf++ }
    }
  }
  return { nan, inf }
}

/** The largest magnitude among the finite values of raw little-endian `dtype` bytes (0 when there are none). */
export function maxAbsFinite(bytes: Uint8Array, dtype: DType): number {
  let max = 0
  if (dtype === 'F32') {
    const a = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes)
    const f = new Float32Array(a.buffer, a.byteOffset, a.byteLength >> 2)
    for (let i = 0; i < f.length; i++) {
      const v = Math.abs(f[i]!)
      if (v > max && v !== Infinity) max = v
    }
    return max
  }
  // Half precision: the magnitude bits order like the values, so the largest finite pattern decides.
  const a = bytes.byteOffset % 2 === 0 ? bytes : new Uint8Array(bytes)
  const u = new Uint16Array(a.buffer, a.byteOffset, a.byteLength >> 1)
  const expMask = dtype === 'F16' ? 0x7c00 : 0x7f80
  let top = 0
  for (let i = 0; i < u.length; i++) {
    const m = u[i]! & 0x7fff
    if (m > top && (m & expMask) !== expMask) top = m
  }
  return top === 0 ? 0 : decodeToFloat32(Uint8Array.from([top & 0xff, top >> 8]), dtype)[0]!
}

/** Decodes raw little-endian bytes of the given dtype into float32. */
export function decodeToFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes)
  if (dtype === 'F32') return new Float32Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + aligned.byteLength))
  const u16 = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2)
  const out = new Float32Array(u16.length)
  const conv = dtype === 'F16' ? halfToFloat : bf16ToFloat
  for (let i = 0; i < u16.length; i++) out[i] = conv(u16[i])
  return out
}

/** Encodes float32 values into the raw bytes of `dtype` (round to nearest even). */
export function encodeFromFloat32(values: Float32Array, dtype: DType): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength))
  const out = new Uint16Array(values.length)
  const conv = dtype === 'F16' ? floatToHalf : floatToBf16
  for (let i = 0; i < values.length; i++) out[i] = conv(values[i])
  return new Uint8Array(out.buffer)
}

export interface TensorToWrite {
  dtype: DType
  shape: number[]
  /** Raw little-endian bytes in `dtype`. */
  data: Uint8Array
}

/** Writes a safetensors file; names are sorted so equal content gives equal bytes. */
export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = { format: 'pt' }): void {
  const names = Object.keys(tensors).sort()
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const name of names) {
    const t = tensors[name]
    const numel = t.shape.reduce((a, b) => a * b, 1)
    if (numel * DTYPE_BYTES[t.dtype] !== t.data.byteLength) {
      fail('INVALID_ARGUMENT', `writeSafetensors: '${name}' has ${t.data.byteLength} bytes for shape ${JSON.stringify(t.shape)} ${t.dtype}.`)
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] }
    offset += t.data.byteLength
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8)
  const headerBytes = Buffer.from(json, 'utf8')
  const lenBuf = Buffer.alloc(8)
  lenBuf.writeBigUInt64LE(BigInt(headerBytes.length))
  const tmp = `${file}.tmp-${process.pid}`
  const fd = fs.openSync(tmp, 'w')
  try {
    try {
      writeAll(fd, lenBuf)
      writeAll(fd, headerBytes)
      for (const name of names) writeAll(fd, tensors[name].data)
    } finally {
      fs.closeSync(fd)
    }
  } catch (e) {
    fs.rmSync(tmp, { force: true }) // a half-written temp file would only take up the space that ran out
    throw e
  }
  fs.renameSync(tmp, file)
}

/** Bytes per read(2)/write(2) call: Node refuses more than 2^31 - 1 at once (ERR_OUT_OF_RANGE). */
const IO_CHUNK = 2 ** 30

/**
 * Writes all of `bytes` at `position` (a byte offset in the file; default: the file position).
 * fs.writeSync returns the bytes written, which is fewer on a nearly full disk or past a file-size
 * limit (no error until the next call): a single call per tensor had left truncated files without an
 * error, and a tensor over 2 GiB (a fused expert stack of a large model) failed with ERR_OUT_OF_RANGE.
 * `chunk` (bytes per call) is for tests. Errors: the file system's (ENOSPC, EFBIG, EIO) as thrown.
 */
export function writeAll(fd: number, bytes: Uint8Array, options: { position?: number; chunk?: number } = {}): void {
  const chunk = options.chunk ?? IO_CHUNK
  let done = 0
  while (done < bytes.byteLength) {
    const at = options.position === undefined ? null : options.position + done
    const n = fs.writeSync(fd, bytes, done, Math.min(chunk, bytes.byteLength - done), at)
    if (n <= 0) fail('FILE_ACCESS', `writing a safetensors file made no progress at byte ${done} of ${bytes.byteLength}; check the disk.`)
    done += n
  }
}
