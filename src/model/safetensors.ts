// safetensors: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// then raw little-endian bytes. Tensors are read one at a time; a shard is never read whole.
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat } from '../util/float16.ts'

export type DType = 'F32' | 'F16' | 'BF16'
export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 }

export interface TensorEntry {
  name: string
  file: string
  dtype: DType
  shape: number[]
  /** Absolute byte offset of the data in `file`. */
  offset: number
  byteLength: number
}

const MAX_HEADER = 256 * 1024 * 1024

/** Parses and validates a safetensors header; every offset is checked against the file size. */
export function readSafetensorsHeader(file: string): TensorEntry[] {
  let fd: number
  try {
    fd = fs.openSync(file, 'r')
  } catch (e) {
    fail('CHECKPOINT_NOT_FOUND', `Cannot open ${file}: ${(e as Error).message}`)
  }
  try {
    const size = fs.fstatSync(fd).size
    const where = path.basename(file)
    if (size < 8) fail('SAFETENSORS_INVALID', `${where} is truncated (${size} bytes): re-download or re-export the checkpoint.`)
    const lenBuf = Buffer.alloc(8)
    fs.readSync(fd, lenBuf, 0, 8, 0)
    const headerLen = Number(lenBuf.readBigUInt64LE(0))
    if (headerLen > MAX_HEADER || 8 + headerLen > size) {
      fail('SAFETENSORS_INVALID', `${where}: header length ${headerLen} exceeds the file size ${size}; the file is truncated or not safetensors.`)
    }
    const headerBuf = Buffer.alloc(headerLen)
    fs.readSync(fd, headerBuf, 0, headerLen, 8)
    let header: Record<string, unknown>
    try {
      header = JSON.parse(headerBuf.toString('utf8'))
    } catch (e) {
      fail('SAFETENSORS_INVALID', `${where}: the JSON header does not parse (${(e as Error).message}).`)
    }
    const dataStart = 8 + headerLen
    const dataSize = size - dataStart
    const entries: TensorEntry[] = []
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') continue
      const info = raw as { dtype?: string; shape?: unknown; data_offsets?: unknown }
      if (!info || typeof info !== 'object') fail('SAFETENSORS_INVALID', `${where}: entry '${name}' is not an object.`)
      const dtype = info.dtype as DType
      if (!(dtype in DTYPE_BYTES)) {
        fail('TENSOR_DTYPE', `${where}: tensor '${name}' has dtype ${info.dtype}; supported dtypes are F32, F16 and BF16.`)
      }
      const shape = info.shape
      if (!Array.isArray(shape) || !shape.every(d => Number.isInteger(d) && d >= 0)) {
        fail('SAFETENSORS_INVALID', `${where}: tensor '${name}' has an invalid shape ${JSON.stringify(shape)}.`)
      }
      const offs = info.data_offsets
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(o => Number.isInteger(o) && o >= 0) || offs[1] < offs[0]) {
        fail('SAFETENSORS_INVALID', `${where}: tensor '${name}' has invalid data_offsets ${JSON.stringify(offs)}.`)
      }
      const [begin, end] = offs as [number, number]
      if (end > dataSize) {
        fail('SAFETENSORS_INVALID', `${where}: tensor '${name}' data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes); the file is truncated or corrupt.`)
      }
      const numel = (shape as number[]).reduce((a, b) => a * b, 1)
      if (numel * DTYPE_BYTES[dtype] !== end - begin) {
        fail('SAFETENSORS_INVALID', `${where}: tensor '${name}' has ${end - begin} bytes but shape ${JSON.stringify(shape)} × ${dtype} needs ${numel * DTYPE_BYTES[dtype]}.`)
      }
      entries.push({ name, file, dtype, shape: shape as number[], offset: dataStart + begin, byteLength: end - begin })
    }
    return entries
  } finally {
    fs.closeSync(fd)
  }
}

export function readTensorBytes(entry: TensorEntry): Buffer {
  const buf = Buffer.alloc(entry.byteLength)
  const fd = fs.openSync(entry.file, 'r')
  try {
    let done = 0
    while (done < entry.byteLength) {
      const n = fs.readSync(fd, buf, done, entry.byteLength - done, entry.offset + done)
      if (n === 0) fail('SAFETENSORS_INVALID', `${entry.file}: unexpected end of file reading '${entry.name}'.`)
      done += n
    }
  } finally {
    fs.closeSync(fd)
  }
  return buf
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
    fs.writeSync(fd, lenBuf)
    fs.writeSync(fd, headerBytes)
    for (const name of names) fs.writeSync(fd, tensors[name].data)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
}
