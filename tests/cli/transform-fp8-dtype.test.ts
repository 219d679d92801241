// transform on an FP8 checkpoint says what it writes: F32 (exact dequantization), not FP8, how big.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { readSafetensorsFile } from '../../src/model/safetensors.ts'
import { lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const bytesOf = (d: string) => fs.readdirSync(d).filter(f => f.endsWith('.safetensors')).reduce((n, f) => n + fs.statSync(path.join(d, f)).size, 0)

describe('transform of an FP8 checkpoint', () => {
  it('writes F32, drops quantization_config, and says so in the message and --json', () => {
    const model = writeTinyDeepseek(path.join(dir, 'v3-fp8'), { version: 'v3', dtype: 'F8_E4M3', seed: 93, layers: 2, qLoraRank: 16, experts: 8, topK: 2, nSharedExperts: 1, firstKDenseReplace: 1, hidden: 128, ffn: 128, denseFfn: 128 })
    assert.ok(JSON.parse(fs.readFileSync(path.join(model.dir, 'config.json'), 'utf8')).quantization_config, 'the fixture is an FP8 checkpoint')
    const out = path.join(dir, 'out')
    const r = runCli(['transform', '--model', model.dir, '--method', 'frequency-pruning', '--ratio', '0.25', '--calibration-sequences', '2', '--calibration-length', '16', '--out', out, '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    const json = lastJson(r.stdout)
    assert.equal(json.dequantized.writtenAs, 'F32')
    assert.equal(json.dequantized.quantizationConfigDropped, true)
    assert.ok(json.dequantized.fp8Tensors > 0)
    assert.equal(json.dequantized.outputBytes, bytesOf(out))
    assert.equal(json.dequantized.sourceBytes, bytesOf(model.dir))
    assert.ok(json.dequantized.outputBytes > json.dequantized.sourceBytes, 'F32 weights are bigger than FP8 ones')
    assert.match(r.stdout, new RegExp(`dtype: ${json.dequantized.fp8Tensors} FP8 weights written as F32 .*not an FP8 checkpoint, quantization_config dropped`))
    assert.match(r.stderr, /note: .* stores \d+ weights as FP8; they are written dequantized as F32/)
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))
    assert.equal(cfg.quantization_config, undefined)
    const dtypes = new Set(fs.readdirSync(out).filter(f => f.endsWith('.safetensors')).flatMap(f => readSafetensorsFile(path.join(out, f)).map(t => t.dtype)))
    assert.ok(dtypes.has('F32') && !dtypes.has('F8_E4M3'), [...dtypes].join(','))
  })

  it('a non-FP8 checkpoint gets no dtype note', () => {
    const model = writeTinyDeepseek(path.join(dir, 'v3-f32'), { version: 'v3', seed: 94, layers: 2, qLoraRank: 16, experts: 8, topK: 2, nSharedExperts: 1, firstKDenseReplace: 1 })
    const r = runCli(['transform', '--model', model.dir, '--method', 'frequency-pruning', '--ratio', '0.25', '--calibration-sequences', '2', '--calibration-length', '16', '--out', path.join(dir, 'out32'), '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.equal(lastJson(r.stdout).dequantized, null)
    assert.doesNotMatch(r.stdout + r.stderr, /FP8/)
  })
})
