// F8_E4M3 weights with `<name>_scale_inv` blocks (DeepSeek-V3/R1's release format) are dequantized on
// load to float32 = fp8 × scale_inv of the block, partial edge blocks included, for 2-D weights and
// for fused transformers-v5 stacks; the scales count as used; bad scales are clear errors.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { isHarnessError } from '../../src/errors.ts'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { e4m3ToFloat, floatToE4m3 } from '../../src/model/safetensors.ts'
import { exportVariant } from '../../src/variants/export.ts'
import { repackFused } from '../helpers/fusedLayout.ts'
import { readTensors, writeTensors, type RawTensor } from '../helpers/rawSafetensors.ts'
import { decodeE4M3, writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const root = tmpDir()
const open = (d: string) => openCheckpoint(d, { warn: m => assert.fail(`unexpected warning: ${m}`) })
const BLOCK: [number, number] = [16, 16]

/**
 * Quantizes a float32 matrix stack [M, R, C] to e4m3 with one scale per BLOCK of each matrix; returns
 * the stored bytes, the scale_inv tensor and the dequantized reference (decoded independently).
 */
function quantize(t: RawTensor): { q: RawTensor; scale: RawTensor; deq: Float32Array } {
  const x = new Float32Array(new Uint8Array(t.bytes).buffer)
  const [M, R, C] = t.shape.length === 3 ? t.shape : [1, ...t.shape]
  const gr = Math.ceil(R / BLOCK[0]), gc = Math.ceil(C / BLOCK[1])
  const scale = new Float32Array(M * gr * gc)
  const q = new Uint8Array(x.length), deq = new Float32Array(x.length)
  for (let m = 0; m < M; m++) {
    for (let br = 0; br < gr; br++) for (let bc = 0; bc < gc; bc++) {
      let amax = 0
      for (let r = br * BLOCK[0]; r < Math.min(R, (br + 1) * BLOCK[0]); r++) for (let c = bc * BLOCK[1]; c < Math.min(C, (bc + 1) * BLOCK[1]); c++) amax = Math.max(amax, Math.abs(x[(m * R + r) * C + c]))
      scale[(m * gr + br) * gc + bc] = Math.fround(amax / 448) || 1
    }
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) {
      const i = (m * R + r) * C + c
      const s = scale[(m * gr + Math.floor(r / BLOCK[0])) * gc + Math.floor(c / BLOCK[1])]
      q[i] = floatToE4m3(x[i] / s)
      deq[i] = Math.fround(decodeE4M3(q[i]) * s)
    }
  }
  const scaleShape = t.shape.length === 3 ? [M, gr, gc] : [gr, gc]
  return { q: { dtype: 'F8_E4M3', shape: t.shape, bytes: q }, scale: { dtype: 'F32', shape: scaleShape, bytes: new Uint8Array(scale.buffer) }, deq }
}

/** Quantizes every matrix named by `which` in `dir` in place (+ quantization_config); returns the dequantized values. */
function toFp8(dir: string, which: (name: string) => boolean): Map<string, Float32Array> {
  const file = path.join(dir, 'model.safetensors')
  const tensors = readTensors(file)
  const ref = new Map<string, Float32Array>()
  for (const [name, t] of [...tensors]) {
    if (!which(name)) continue
    const { q, scale, deq } = quantize(t)
    tensors.set(name, q)
    tensors.set(`${name}_scale_inv`, scale)
    ref.set(name, deq)
  }
  writeTensors(file, tensors)
  const cfgFile = path.join(dir, 'config.json')
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'))
  cfg.quantization_config = { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: BLOCK }
  fs.writeFileSync(cfgFile, JSON.stringify(cfg))
  return ref
}

/** The same model with the dequantized values stored as plain F32 (what the FP8 file must score as). */
function dequantizedCopy(src: string, dst: string, ref: Map<string, Float32Array>): void {
  fs.mkdirSync(dst, { recursive: true })
  for (const f of fs.readdirSync(src)) if (f !== 'model.safetensors') fs.copyFileSync(path.join(src, f), path.join(dst, f))
  const tensors = readTensors(path.join(src, 'model.safetensors'))
  for (const [name, deq] of ref) {
    tensors.set(name, { dtype: 'F32', shape: tensors.get(name)!.shape, bytes: new Uint8Array(deq.buffer) })
    tensors.delete(`${name}_scale_inv`)
  }
  writeTensors(path.join(dst, 'model.safetensors'), tensors)
  const cfg = JSON.parse(fs.readFileSync(path.join(dst, 'config.json'), 'utf8'))
  delete cfg.quantization_config
  fs.writeFileSync(path.join(dst, 'config.json'), JSON.stringify(cfg))
}

async function scores(ckpt: Checkpoint): Promise<number[]> {
  const s = await createLocalScorer(ckpt, emptyEdits(), { device: 'cpu', threads: 1 })
  try {
    return (await s.score([{ prefix: [0, 17, 42, 99, 3, 250, 8, 8, 19], branches: [], scorePrefixFrom: 1 }]))[0].prefix
  } finally {
    await s.release()
  }
}

function rejects(fn: () => unknown, code: string, ...mentions: RegExp[]) {
  let err: unknown
  try { fn() } catch (e) { err = e }
  assert.ok(isHarnessError(err), String(err))
  assert.equal(err.code, code, err.message)
  for (const m of mentions) assert.match(err.message, m)
}

const linear = (n: string) => /(proj|w[123])\.weight$/.test(n)

describe('float8 e4m3fn', () => {
  it('every finite code round-trips; ties round to even; out of range saturates; 0x7f is NaN', () => {
    for (let b = 0; b < 256; b++) {
      const v = e4m3ToFloat(b)
      if ((b & 0x7f) === 0x7f) { assert.ok(Number.isNaN(v)); continue }
      assert.equal(v, decodeE4M3(b))
      assert.equal(floatToE4m3(v), b === 0x80 ? 0x80 : b)
    }
    assert.equal(e4m3ToFloat(0x7e), 448)
    assert.equal(floatToE4m3(1e6), 0x7e)
    assert.equal(floatToE4m3(-1e6), 0xfe)
    assert.equal(floatToE4m3(1 + 1 / 16), floatToE4m3(1)) // halfway between 1 and 1.125: even mantissa
    assert.equal(floatToE4m3(1 + 3 / 16), floatToE4m3(1.25))
    assert.equal(e4m3ToFloat(1), 2 ** -9) // smallest subnormal
  })
})

describe('FP8 checkpoints', () => {
  it('DeepSeek-V3 style FP8 (128x128 blocks, partial edge blocks) dequantizes exactly as the reference', () => {
    for (const version of ['v2', 'v3'] as const) {
      const m = writeTinyDeepseek(path.join(root, `ds-${version}`), { version, dtype: 'F8_E4M3', seed: 7, hidden: 160, ffn: 136 })
      const ckpt = open(m.dir)
      assert.deepEqual(ckpt.unused, [], 'every scale tensor is used')
      for (const name of m.fp8Weights) assert.equal(ckpt.tensors.get(name)!.dtype, 'F32')
      for (const [name, t] of m.tensors) assert.deepEqual(ckpt.read(name), t.data, name)
    }
  })

  it('an FP8 Qwen3-MoE (16x16 blocks, per-expert and fused v5 stacks) scores exactly like its dequantized F32 copy', async () => {
    const fp8 = path.join(root, 'q3-fp8')
    writeTinyCheckpoint(fp8, { family: 'qwen3_moe', seed: 8, hidden: 40, ffn: 20, mlpOnlyLayers: [1], layers: 2 })
    const ref = toFp8(fp8, linear)
    const f32 = path.join(root, 'q3-deq')
    dequantizedCopy(fp8, f32, ref)
    const a = open(fp8), b = open(f32)
    for (const [name, deq] of ref) assert.deepEqual(a.read(name), deq, name)
    const want = await scores(b)
    assert.ok(want.every(Number.isFinite))
    assert.ok(Math.max(...(await scores(a)).map((v, i) => Math.abs(v - want[i]))) <= 1e-6)

    // Fused: the stack [E, 2F, d] is quantized as a whole, so an up slice starts mid-block (F = 20).
    const v4 = path.join(root, 'q3-v4'), v5 = path.join(root, 'q3-v5')
    writeTinyCheckpoint(v4, { family: 'qwen3_moe', seed: 8, hidden: 40, ffn: 20, mlpOnlyLayers: [1], layers: 2 })
    repackFused(v4, v5)
    const fusedRef = toFp8(v5, n => n.endsWith('gate_up_proj') || n.endsWith('down_proj'))
    const c = open(v5)
    assert.equal(c.expertLayout, 'fused')
    const [E, twoF, d] = [4, 40, 40]
    const stack = fusedRef.get('model.layers.0.mlp.experts.gate_up_proj')!
    for (let e = 0; e < E; e++) {
      const gate = c.read(`model.layers.0.mlp.experts.${e}.gate_proj.weight`)
      const up = c.read(`model.layers.0.mlp.experts.${e}.up_proj.weight`)
      assert.deepEqual(gate, stack.slice(e * twoF * d, e * twoF * d + (twoF / 2) * d))
      assert.deepEqual(up, stack.slice(e * twoF * d + (twoF / 2) * d, (e + 1) * twoF * d))
    }
    assert.deepEqual(c.read('model.layers.0.mlp.experts.3.down_proj.weight'), fusedRef.get('model.layers.0.mlp.experts.down_proj')!.slice(3 * d * 20, 4 * d * 20))
    assert.deepEqual(c.unused, [])
  })

  it('an exported FP8 model is a plain F32 checkpoint without quantization_config, with the same weights', () => {
    const d = path.join(root, 'export-src')
    writeTinyCheckpoint(d, { family: 'qwen3_moe', seed: 12 })
    const ref = toFp8(d, linear)
    const out = path.join(root, 'export-out')
    exportVariant(open(d), emptyEdits(), out, { test: true })
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))
    assert.equal(config.quantization_config, undefined)
    const reopened = open(out)
    for (const [name, deq] of ref) {
      assert.equal(reopened.tensors.get(name)!.dtype, 'F32')
      assert.deepEqual(reopened.read(name), deq)
    }
  })

  it('missing or mis-shaped scales, a missing quantization_config and other quantization methods are clear errors', () => {
    const d = path.join(root, 'bad')
    writeTinyCheckpoint(d, { family: 'mixtral', seed: 9 })
    toFp8(d, linear)
    const file = path.join(d, 'model.safetensors')
    const good = readTensors(file)
    const name = 'model.layers.0.self_attn.q_proj.weight'
    const without = new Map(good)
    without.delete(`${name}_scale_inv`)
    writeTensors(file, without)
    rejects(() => open(d), 'TENSOR_MISSING', new RegExp(`'${name.replace(/\./g, '\\.')}' is F8_E4M3 but its block scales '${name.replace(/\./g, '\\.')}_scale_inv' are missing`))
    const wrong = new Map(good)
    wrong.set(`${name}_scale_inv`, { dtype: 'F32', shape: [1, 4], bytes: new Uint8Array(16) })
    writeTensors(file, wrong)
    rejects(() => open(d), 'TENSOR_SHAPE', /scale tensor '.*q_proj\.weight_scale_inv' has shape \[1,4\] but weight \[32,32\] in 16x16 blocks .* needs \[2,2\]/)
    writeTensors(file, good)
    const cfgFile = path.join(d, 'config.json')
    const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'))
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, quantization_config: undefined }))
    rejects(() => open(d), 'CONFIG_INVALID', /is F8_E4M3, but config\.json has no quantization_config/)
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, quantization_config: { quant_method: 'gptq', bits: 4 } }))
    rejects(() => open(d), 'CONFIG_UNSUPPORTED', /quantization_config\.quant_method "gptq" is not supported/)
  })

  it('a NaN fp8 code is refused on read like any non-finite weight', () => {
    const d = path.join(root, 'nan')
    writeTinyCheckpoint(d, { family: 'mixtral', seed: 10 })
    toFp8(d, linear)
    const file = path.join(d, 'model.safetensors')
    const t = readTensors(file)
    const w = t.get('model.layers.1.block_sparse_moe.experts.0.w2.weight')!
    const bytes = new Uint8Array(w.bytes)
    bytes[5] = 0x7f
    t.set('model.layers.1.block_sparse_moe.experts.0.w2.weight', { ...w, bytes })
    writeTensors(file, t)
    rejects(() => open(d).read('model.layers.1.block_sparse_moe.experts.0.w2.weight'), 'TENSOR_NONFINITE', /holds 1 NaN of its 768 values/)
  })
})
