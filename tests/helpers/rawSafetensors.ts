// Byte-level safetensors surgery for tests of malformed and re-laid-out checkpoints: read a file's
// header text and data section, write any header text (valid or not) in front of any bytes.
import fs from 'node:fs'

export interface RawFile {
  header: Record<string, any>
  headerText: string
  data: Buffer
}

export function readRaw(file: string): RawFile {
  const buf = fs.readFileSync(file)
  const len = Number(buf.readBigUInt64LE(0))
  const headerText = buf.subarray(8, 8 + len).toString('utf8')
  return { header: JSON.parse(headerText), headerText, data: Buffer.from(buf.subarray(8 + len)) }
}

/** Writes `headerText` verbatim (padded to 8 bytes) and `data` after it. */
export function writeRaw(file: string, headerText: string, data: Uint8Array): void {
  const padded = headerText + ' '.repeat((8 - (Buffer.byteLength(headerText) % 8)) % 8)
  const head = Buffer.from(padded, 'utf8')
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(head.length))
  fs.writeFileSync(file, Buffer.concat([len, head, data]))
}

/** Rewrites a file's header through `edit` (the data section is kept as is). */
export function editHeader(file: string, edit: (header: Record<string, any>) => void): void {
  const raw = readRaw(file)
  edit(raw.header)
  writeRaw(file, JSON.stringify(raw.header), raw.data)
}

/** The bytes of one tensor of a raw file. */
export function tensorBytes(raw: RawFile, name: string): Buffer {
  const [a, b] = raw.header[name].data_offsets
  return raw.data.subarray(a, b)
}

export interface RawTensor { dtype: string; shape: number[]; bytes: Uint8Array }

/** Writes tensors of any dtype, packed in name order (a well-formed file). */
export function writeTensors(file: string, tensors: Map<string, RawTensor> | Record<string, RawTensor>): void {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors))
  const names = [...map.keys()].sort()
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } }
  let offset = 0
  for (const n of names) {
    const t = map.get(n)!
    header[n] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] }
    offset += t.bytes.byteLength
  }
  writeRaw(file, JSON.stringify(header), Buffer.concat(names.map(n => Buffer.from(map.get(n)!.bytes))))
}

/** All tensors of a well-formed file. */
export function readTensors(file: string): Map<string, RawTensor> {
  const raw = readRaw(file)
  const out = new Map<string, RawTensor>()
  for (const [name, info] of Object.entries(raw.header)) {
    if (name === '__metadata__') continue
    out.set(name, { dtype: info.dtype, shape: info.shape, bytes: Buffer.from(tensorBytes(raw, name)) })
  }
  return out
}

/** Writes NaN over the first value of each named F32 tensor, in place (a checkpoint with non-finite weights). */
export function poisonTensors(file: string, names: string[]): void {
  const raw = readRaw(file)
  for (const name of names) tensorBytes(raw, name).writeFloatLE(NaN, 0)
  writeRaw(file, raw.headerText, raw.data)
}
