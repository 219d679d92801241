import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { decodeToFloat32, encodeFromFloat32, readSafetensorsHeader, readTensorBytes, writeSafetensors } from '../../src/model/safetensors.ts'
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat } from '../../src/util/float16.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()

describe('float16 / bfloat16', () => {
  it('converts known bit patterns exactly', () => {
    const cases: [number, number][] = [[0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [2 ** -24, 0x0001], [2 ** -14, 0x0400], [Infinity, 0x7c00], [1e6, 0x7c00], [0.1, 0x2e66]]
    for (const [v, bits] of cases) {
      assert.equal(floatToHalf(v), bits, `half(${v})`)
      if (v !== 1e6) assert.equal(halfToFloat(bits), v === 0.1 ? 0.0999755859375 : v)
    }
    assert.ok(Number.isNaN(halfToFloat(floatToHalf(NaN))))
    // Round to nearest even between 1 and 1 + 2^-10.
    assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00)
    assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02)
    assert.equal(floatToHalf(3 * 2 ** -25), 0x0002) // subnormal, ties to even
  })

  it('bfloat16 is the top half of float32 with round-to-nearest-even', () => {
    assert.equal(floatToBf16(1), 0x3f80)
    assert.equal(bf16ToFloat(0x3f80), 1)
    assert.equal(floatToBf16(-3.5), 0xc060)
    assert.equal(bf16ToFloat(floatToBf16(1 + 2 ** -8)), 1) // tie rounds to even
    assert.equal(bf16ToFloat(floatToBf16(1 + 3 * 2 ** -8)), 1 + 2 ** -6)
    assert.ok(Number.isNaN(bf16ToFloat(floatToBf16(NaN))))
  })
})

describe('safetensors', () => {
  it('round-trips F32, F16 and BF16 tensors through the writer and reader', () => {
    const values = Float32Array.from([0, 1, -1.5, 0.333, 1024, -7e-5])
    const file = path.join(dir, 'rt.safetensors')
    writeSafetensors(file, {
      a: { dtype: 'F32', shape: [2, 3], data: encodeFromFloat32(values, 'F32') },
      b: { dtype: 'F16', shape: [6], data: encodeFromFloat32(values, 'F16') },
      c: { dtype: 'BF16', shape: [3, 2], data: encodeFromFloat32(values, 'BF16') },
    })
    const entries = new Map(readSafetensorsHeader(file).map(e => [e.name, e]))
    assert.deepEqual(entries.get('a')!.shape, [2, 3])
    assert.deepEqual(Array.from(decodeToFloat32(readTensorBytes(entries.get('a')!), 'F32')), Array.from(values))
    const half = decodeToFloat32(readTensorBytes(entries.get('b')!), 'F16')
    const bf = decodeToFloat32(readTensorBytes(entries.get('c')!), 'BF16')
    values.forEach((v, i) => {
      assert.ok(Math.abs(half[i] - v) <= Math.abs(v) * 2 ** -11 + 6e-8)
      assert.ok(Math.abs(bf[i] - v) <= Math.abs(v) * 2 ** -8)
    })
    // Header is 8-byte aligned and the data begins right after it.
    const buf = fs.readFileSync(file)
    const len = Number(buf.readBigUInt64LE(0))
    assert.equal(len % 8, 0)
    assert.equal(buf.length, 8 + len + 4 * 6 + 2 * 6 + 2 * 6)
  })

  it('sharded checkpoints load through the index and match the single-file layout', () => {
    const one = writeTinyCheckpoint(path.join(dir, 'one'), { family: 'qwen2_moe', seed: 8 })
    writeTinyCheckpoint(path.join(dir, 'three'), { family: 'qwen2_moe', seed: 8, shards: 3 })
    const a = openCheckpoint(path.join(dir, 'one'))
    const b = openCheckpoint(path.join(dir, 'three'))
    assert.equal(new Set([...b.tensors.values()].map(e => e.file)).size, 3)
    for (const name of one.tensors.keys()) assert.deepEqual(b.read(name), a.read(name))
    assert.equal(a.tensors.size, b.tensors.size)
  })

  it('the model fingerprint changes when one weight changes', () => {
    writeTinyCheckpoint(path.join(dir, 'fa'), { family: 'mixtral', seed: 9 })
    writeTinyCheckpoint(path.join(dir, 'fb'), { family: 'mixtral', seed: 9 })
    writeTinyCheckpoint(path.join(dir, 'fc'), { family: 'mixtral', seed: 10 })
    const fa = openCheckpoint(path.join(dir, 'fa')).fingerprint()
    assert.equal(fa, openCheckpoint(path.join(dir, 'fb')).fingerprint())
    assert.notEqual(fa, openCheckpoint(path.join(dir, 'fc')).fingerprint())
    assert.match(fa, /^[0-9a-f]{64}$/)
  })
})
