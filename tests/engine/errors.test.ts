// Bad checkpoints and bad inputs: a clear coded error naming the fix, and a non-zero exit.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
let n = 0
function fresh(mutate: (d: string) => void, family: 'mixtral' | 'qwen3_moe' = 'mixtral'): string {
  const d = path.join(dir, `m${n++}`)
  writeTinyCheckpoint(d, { family, seed: 4 })
  mutate(d)
  return d
}
const editJson = (file: string, f: (j: any) => void) => {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'))
  f(j)
  fs.writeFileSync(file, JSON.stringify(j))
}
/** Rewrites the safetensors header in place (same length, padded with spaces). */
function editHeader(d: string, f: (h: any) => void) {
  const file = path.join(d, 'model.safetensors')
  const buf = fs.readFileSync(file)
  const len = Number(buf.readBigUInt64LE(0))
  const header = JSON.parse(buf.subarray(8, 8 + len).toString())
  f(header)
  let text = JSON.stringify(header)
  assert.ok(text.length <= len, 'edited header must not grow')
  text = text.padEnd(len, ' ')
  buf.write(text, 8)
  fs.writeFileSync(file, buf)
}

function expectError(args: string[], code: string, mention: RegExp) {
  const r = runCli(['score', ...args])
  assert.notEqual(r.status, 0, `exit status should be non-zero; stdout: ${r.stdout}`)
  assert.match(r.stderr, new RegExp(`error \\[${code}\\]`), r.stderr)
  assert.match(r.stderr, mention)
  assert.equal(r.stdout, '', 'nothing is printed as a result')
}

describe('clear errors on bad inputs', () => {
  it('truncated safetensors', () => {
    const d = fresh(d => {
      const f = path.join(d, 'model.safetensors')
      fs.truncateSync(f, fs.statSync(f).size - 100)
    })
    expectError(['--model', d, '--ids', '1,2,3'], 'SAFETENSORS_INVALID', /truncated|past the end/)
  })

  it('header offsets out of range', () => {
    const d = fresh(d => editHeader(d, h => { h['model.norm.weight'].data_offsets = [0, 999999999] }))
    expectError(['--model', d, '--ids', '1,2,3'], 'SAFETENSORS_INVALID', /model\.norm\.weight.*data_offsets/)
  })

  it('header length larger than the file', () => {
    const d = fresh(d => {
      const f = path.join(d, 'model.safetensors')
      const buf = fs.readFileSync(f)
      buf.writeBigUInt64LE(BigInt(buf.length * 2), 0)
      fs.writeFileSync(f, buf)
    })
    expectError(['--model', d, '--ids', '1,2,3'], 'SAFETENSORS_INVALID', /header length/)
  })

  it('missing tensor', () => {
    const d = fresh(d => editHeader(d, h => {
      h['model.layers.1.block_sparse_moe.experts.3.w2.weigXX'] = h['model.layers.1.block_sparse_moe.experts.3.w2.weight']
      delete h['model.layers.1.block_sparse_moe.experts.3.w2.weight']
    }))
    expectError(['--model', d, '--ids', '1,2,3'], 'TENSOR_MISSING', /experts\.3\.w2\.weight/)
  })

  it('wrong shape', () => {
    // Same number of elements, so only the shape check can catch it.
    const d = fresh(d => editHeader(d, h => { h['model.layers.0.self_attn.q_proj.weight'].shape = [16, 64] }))
    expectError(['--model', d, '--ids', '1,2,3'], 'TENSOR_SHAPE', /q_proj\.weight.*\[16,64\]/)
  })

  it('bad JSON in config.json', () => {
    const d = fresh(d => fs.writeFileSync(path.join(d, 'config.json'), '{"architectures": ["MixtralForCausalLM"], '))
    expectError(['--model', d, '--ids', '1,2,3'], 'CONFIG_INVALID', /config\.json is not valid JSON/)
  })

  it('unknown architecture suggests the closest', () => {
    const d = fresh(d => editJson(path.join(d, 'config.json'), j => { j.architectures = ['MixtralForCausalLMM'] }))
    expectError(['--model', d, '--ids', '1,2,3'], 'UNKNOWN_ARCHITECTURE', /Did you mean: MixtralForCausalLM/)
  })

  it('an unsupported rope type is refused, naming the field', () => {
    const d = fresh(d => editJson(path.join(d, 'config.json'), j => { j.rope_scaling = { rope_type: 'linear', factor: 4 } }), 'qwen3_moe')
    expectError(['--model', d, '--ids', '1,2,3'], 'CONFIG_UNSUPPORTED', /rope_scaling\.rope_type 'linear'/)
  })

  it('an active sliding window is refused for longer inputs', () => {
    const d = fresh(d => editJson(path.join(d, 'config.json'), j => { j.sliding_window = 4 }))
    expectError(['--model', d, '--ids', '1,2,3,4,5,6'], 'SEQUENCE_TOO_LONG', /sliding_window of 4; .*eval --max-length 4 cuts rolling windows there/)
    const ok = runCli(['score', '--model', d, '--ids', '1,2,3,4'])
    assert.equal(ok.status, 0, ok.stderr)
  })

  it('token id >= vocab', () => {
    const d = fresh(() => {})
    expectError(['--model', d, '--ids', '1,2,320'], 'TOKEN_OUT_OF_RANGE', /320 is outside the model's vocabulary 0\.\.319/)
  })

  it('missing model folder and bad flags', () => {
    expectError(['--model', path.join(dir, 'nope'), '--ids', '1,2'], 'CHECKPOINT_NOT_FOUND', /does not exist/)
    const d = fresh(() => {})
    expectError(['--model', d, '--ids', '1,x'], 'INVALID_ARGUMENT', /--ids/)
    expectError(['--model', d, '--ids', '1,2', '--mask-experts', '0:9'], 'HOOK_INVALID', /out of range/)
    expectError(['--model', d, '--ids', '1,2', '--mask-experts', '0:0,1,2'], 'HOOK_INVALID', /top-k is 2/)
    expectError(['--model', d, '--ids', '1,2', '--neuron-topk', '1.5'], 'INVALID_ARGUMENT', /--neuron-topk/)
  })
})
