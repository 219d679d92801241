// Malformed checkpoints end in one clear, coded error naming the file and the tensor, before any
// work: safetensors headers, sharded indexes, config vs tensors, NaN/Inf weights, and stored
// tensors the model would silently ignore (issue 14 §2, issue 9 §4, case 07).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { isHarnessError } from '../../src/errors.ts'
import { emptyEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint, type CheckpointOptions } from '../../src/model/checkpoint.ts'
import { readSafetensorsFile, topLevelKeys } from '../../src/model/safetensors.ts'
import { lastJson, runCli } from '../helpers/cli.ts'
import { editHeader, readRaw, readTensors, writeRaw, writeTensors } from '../helpers/rawSafetensors.ts'
import { writeTinyCheckpoint, type TinyFamily, type TinyOptions } from '../helpers/tinyCheckpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

const root = tmpDir()
let n = 0
function model(o: Partial<TinyOptions> & { family?: TinyFamily } = {}): string {
  const d = path.join(root, `m${n++}`)
  writeTinyCheckpoint(d, { family: 'mixtral', seed: 5, ...o })
  return d
}
const st = (d: string) => path.join(d, 'model.safetensors')
const editJson = (file: string, f: (j: any) => void) => {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'))
  f(j)
  fs.writeFileSync(file, JSON.stringify(j))
}

function rejects(fn: () => unknown, code: string, ...mentions: RegExp[]): string {
  let err: unknown
  try { fn() } catch (e) { err = e }
  assert.ok(isHarnessError(err), `expected a HarnessError [${code}], got ${err}`)
  assert.equal(err.code, code, err.message)
  for (const m of mentions) assert.match(err.message, m)
  return err.message
}
const open = (d: string, o: CheckpointOptions = {}) => openCheckpoint(d, { warn: () => {}, ...o })

describe('safetensors header validation', () => {
  it('a header length past the end of the file, or too short for JSON', () => {
    const d = model()
    const raw = readRaw(st(d))
    const buf = fs.readFileSync(st(d))
    buf.writeBigUInt64LE(BigInt(buf.length), 0)
    fs.writeFileSync(st(d), buf)
    rejects(() => readSafetensorsFile(st(d)), 'SAFETENSORS_INVALID', /model\.safetensors/, /header length \d+ exceeds the file size/)
    writeRaw(st(d), '', raw.data)
    rejects(() => readSafetensorsFile(st(d)), 'SAFETENSORS_INVALID', /header length 0 is too short/)
    fs.writeFileSync(st(d), Buffer.alloc(5))
    rejects(() => open(d), 'SAFETENSORS_INVALID', /is truncated \(5 bytes/)
  })

  it('a header that is not a JSON object', () => {
    const d = model()
    const raw = readRaw(st(d))
    writeRaw(st(d), raw.headerText.slice(0, -10), raw.data)
    rejects(() => open(d), 'SAFETENSORS_INVALID', /JSON header does not parse/)
    writeRaw(st(d), '[1, 2]', raw.data)
    rejects(() => open(d), 'SAFETENSORS_INVALID', /does not start with '\{'/)
    writeRaw(st(d), ` ${raw.headerText}`, raw.data)
    rejects(() => open(d), 'SAFETENSORS_INVALID', /does not start with '\{' \(it starts with " \{/)
    writeRaw(st(d), '{"a": 1', raw.data)
    rejects(() => open(d), 'SAFETENSORS_INVALID', /JSON header does not parse/)
    writeRaw(st(d), JSON.stringify({ __metadata__: { format: 1 } }), Buffer.alloc(0))
    rejects(() => open(d), 'SAFETENSORS_INVALID', /__metadata__ must be an object of strings/)
  })

  it('a tensor named twice in the header (JSON.parse would keep the last silently)', () => {
    const d = model()
    const raw = readRaw(st(d))
    const norm = raw.header['model.norm.weight']
    // A second 'model.norm.weight' pointing at the bytes of the first layer norm, same size.
    const other = raw.header['model.layers.0.input_layernorm.weight']
    const text = raw.headerText.trimEnd().replace(/}$/, `,"model.norm.weight":${JSON.stringify({ ...norm, data_offsets: other.data_offsets })}}`)
    assert.deepEqual(topLevelKeys(text).filter(k => k === 'model.norm.weight').length, 2)
    writeRaw(st(d), text, raw.data)
    rejects(() => open(d), 'SAFETENSORS_INVALID', /model\.safetensors/, /names tensor 'model\.norm\.weight' twice/)
  })

  it('topLevelKeys reads keys with escapes and nested values', () => {
    assert.deepEqual(topLevelKeys('{"a\\"b": {"x": [1, {"y": "}"}]}, "c" : "d\\\\", "e": null}'), ['a"b', 'c', 'e'])
  })

  it('unknown dtypes, bad shapes and bad data_offsets name the tensor', () => {
    const d = model()
    const file = st(d)
    const original = fs.readFileSync(file)
    const cases: [(h: any) => void, RegExp][] = [
      [h => { h['model.norm.weight'].dtype = 'F33' }, /'model\.norm\.weight' has unknown dtype "F33"/],
      [h => { h['model.norm.weight'].shape = [-32] }, /'model\.norm\.weight' has an invalid shape \[-32\]/],
      [h => { h['model.norm.weight'].shape = [16.5, 2] }, /'model\.norm\.weight' has an invalid shape/],
      [h => { h['model.norm.weight'].data_offsets = [8, 4] }, /'model\.norm\.weight' has invalid data_offsets \[8,4\]/],
      [h => { h['model.norm.weight'].shape = [31] }, /'model\.norm\.weight' has 128 bytes .* \[31\] × F32 needs 124/],
      [h => { h['model.norm.weight'].dtype = 'F16' }, /'model\.norm\.weight' has 128 bytes .* needs 64/],
    ]
    for (const [edit, message] of cases) {
      fs.writeFileSync(file, original)
      editHeader(file, edit)
      rejects(() => open(d), 'SAFETENSORS_INVALID', /model\.safetensors/, message)
    }
  })

  it('overlapping, gapped or uncovered data sections are refused', () => {
    const d = model()
    const file = st(d)
    const original = fs.readFileSync(file)
    // Two equal-size tensors sharing the same bytes (the file loads as a different model otherwise).
    editHeader(file, h => { h['model.norm.weight'].data_offsets = [...h['model.layers.0.input_layernorm.weight'].data_offsets] })
    rejects(() => open(d), 'SAFETENSORS_INVALID', /data_offsets \[\d+, \d+\] overlap tensor/, /model\.norm\.weight|input_layernorm/)
    // Bytes no tensor claims, at the end and in the middle.
    fs.writeFileSync(file, Buffer.concat([original, Buffer.alloc(16)]))
    rejects(() => open(d), 'SAFETENSORS_INVALID', /16 bytes after the last tensor/)
    fs.writeFileSync(file, original)
    const raw = readRaw(file)
    const tensors = readTensors(file)
    tensors.delete('model.layers.0.input_layernorm.weight') // its bytes stay in the data section as a hole
    const header: Record<string, unknown> = {}
    for (const name of tensors.keys()) header[name] = raw.header[name]
    writeRaw(file, JSON.stringify(header), raw.data)
    rejects(() => open(d), 'SAFETENSORS_INVALID', /leave a gap of 128 unclaimed bytes/)
  })

  it('a zero-size tensor and an empty __metadata__ are valid', () => {
    const d = model()
    const tensors = readTensors(st(d))
    tensors.set('model.extra_empty', { dtype: 'F32', shape: [0], bytes: new Uint8Array(0) })
    writeTensors(st(d), tensors)
    editHeader(st(d), h => { h.__metadata__ = {} })
    assert.equal(open(d).tensors.size, [...tensors.keys()].length - 1)
  })
})

describe('sharded checkpoints: every lookup goes through the index', () => {
  const shardOf = (d: string, name: string) => JSON.parse(fs.readFileSync(path.join(d, 'model.safetensors.index.json'), 'utf8')).weight_map[name] as string

  it('a tensor stored in two shards is read from the shard the index names, with a warning', () => {
    const d = model({ shards: 3 })
    const plain = open(d).read('model.norm.weight')
    const named = shardOf(d, 'model.norm.weight')
    const other = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'].find(f => f !== named)!
    const tensors = readTensors(path.join(d, other))
    tensors.set('model.norm.weight', { dtype: 'F32', shape: [32], bytes: new Uint8Array(new Float32Array(32).fill(7).buffer) })
    writeTensors(path.join(d, other), tensors)
    const warnings: string[] = []
    const ckpt = open(d, { warn: m => warnings.push(m) })
    assert.deepEqual(ckpt.read('model.norm.weight'), plain)
    assert.equal(ckpt.tensors.get('model.norm.weight')!.file, path.join(d, named))
    assert.equal(warnings.length, 1)
    assert.match(warnings[0], new RegExp(`'model\\.norm\\.weight' in ${other.replace(/\./g, '\\.')}`))
  })

  it('a tensor the index lists but its shard lacks, or a missing shard, names both files', () => {
    const d = model({ shards: 2 })
    const named = shardOf(d, 'model.norm.weight')
    const tensors = readTensors(path.join(d, named))
    tensors.delete('model.norm.weight')
    writeTensors(path.join(d, named), tensors)
    rejects(() => open(d), 'SAFETENSORS_INVALID', /model\.safetensors\.index\.json maps tensor 'model\.norm\.weight' to model-0000\d-of-00002\.safetensors/, new RegExp(`${named.replace(/\./g, '\\.')} has no tensor 'model\\.norm\\.weight'`))
    const d2 = model({ shards: 2 })
    fs.rmSync(path.join(d2, 'model-00002-of-00002.safetensors'))
    rejects(() => open(d2), 'CHECKPOINT_NOT_FOUND', /model\.safetensors\.index\.json names shard model-00002-of-00002\.safetensors, which is missing/)
    const d4 = model({ shards: 2 })
    editJson(path.join(d4, 'model.safetensors.index.json'), j => { delete j.weight_map['model.norm.weight'] })
    rejects(() => open(d4), 'SAFETENSORS_INVALID', /model\.safetensors\.index\.json does not list tensor 'model\.norm\.weight', which .*model-0000\d-of-00002\.safetensors holds/)
    const d3 = model({ shards: 2 })
    editJson(path.join(d3, 'model.safetensors.index.json'), j => { j.weight_map['model.norm.weight'] = '../outside.safetensors' })
    rejects(() => open(d3), 'SAFETENSORS_INVALID', /maps 'model\.norm\.weight' to "\.\.\/outside\.safetensors"/)
  })
})

describe('config.json against the stored tensors, before any per-layer allocation', () => {
  it('num_hidden_layers: 1e9 fails fast naming the field', () => {
    const d = model()
    editJson(path.join(d, 'config.json'), j => { j.num_hidden_layers = 1e9 })
    const t0 = performance.now()
    rejects(() => open(d), 'TENSOR_MISSING', /num_hidden_layers 1000000000/, /stores tensors for 2 layer\(s\) \(model\.layers\.0 … model\.layers\.1\)/)
    assert.ok(performance.now() - t0 < 2000)
    // Other config errors still come first.
    editJson(path.join(d, 'config.json'), j => { j.architectures = ['MixtralForCausalLMM'] })
    rejects(() => open(d), 'UNKNOWN_ARCHITECTURE', /Did you mean: MixtralForCausalLM/)
  })

  it('a huge expert count fails fast naming the expert key', () => {
    const d = model()
    editJson(path.join(d, 'config.json'), j => { j.num_local_experts = 1e9; j.num_experts_per_tok = 2 })
    const t0 = performance.now()
    rejects(() => open(d), 'TENSOR_MISSING', /1000000000 experts, but the checkpoint stores 4/)
    assert.ok(performance.now() - t0 < 2000)
  })

  it('one layer more than stored is the same clear error', () => {
    const d = model({ family: 'qwen3_moe' })
    editJson(path.join(d, 'config.json'), j => { j.num_hidden_layers = 3 })
    rejects(() => open(d), 'TENSOR_MISSING', /num_hidden_layers 3/)
  })
})

describe('non-finite weights', () => {
  function withNan(dtype: 'F32' | 'BF16'): string {
    const d = model({ dtype })
    const raw = readRaw(st(d))
    const [a] = raw.header['model.layers.1.block_sparse_moe.experts.2.w3.weight'].data_offsets
    if (dtype === 'F32') { raw.data.writeFloatLE(NaN, a); raw.data.writeFloatLE(-Infinity, a + 8); raw.data.writeFloatLE(NaN, a + 16) }
    else { raw.data.writeUInt16LE(0x7fc0, a); raw.data.writeUInt16LE(0xff80, a + 4); raw.data.writeUInt16LE(0x7fc1, a + 8) }
    writeRaw(st(d), raw.headerText, raw.data)
    return d
  }

  for (const dtype of ['F32', 'BF16'] as const) {
    it(`${dtype}: NaN/Inf are refused on read naming the tensor and the count; allowed with allowNonfinite`, () => {
      const d = withNan(dtype)
      const ckpt = open(d)
      rejects(() => ckpt.read('model.layers.1.block_sparse_moe.experts.2.w3.weight'), 'TENSOR_NONFINITE',
        /'model\.layers\.1\.block_sparse_moe\.experts\.2\.w3\.weight' holds 2 NaN and 1 ±Inf of its 768 values/, /--allow-nonfinite/)
      assert.equal(ckpt.read('model.norm.weight').length, 32) // other tensors read fine
      const allowed = open(d, { allowNonfinite: true }).read('model.layers.1.block_sparse_moe.experts.2.w3.weight')
      assert.ok(Number.isNaN(allowed[0]) && allowed[2] === -Infinity && Number.isFinite(allowed[1]))
    })
  }

  it('score exits non-zero with the error, and scores with --allow-nonfinite', () => {
    const d = withNan('F32')
    const bad = runCli(['score', '--model', d, '--ids', '1,2,3,4', '--json'])
    assert.notEqual(bad.status, 0)
    assert.match(bad.stderr, /error \[TENSOR_NONFINITE\]: .*experts\.2\.w3\.weight' holds 2 NaN and 1 ±Inf/)
    assert.equal(bad.stdout, '')
    const ok = runCli(['score', '--model', d, '--ids', '1,2,3,4', '--json', '--allow-nonfinite'])
    assert.equal(ok.status, 0, ok.stderr)
    assert.equal(lastJson(ok.stdout).logprobs.length, 3)
  })
})

describe('nothing stored is silently ignored', () => {
  it('an extra expert, a layer beyond num_hidden_layers, a disabled shared expert: errors naming them', () => {
    const d = model()
    const tensors = readTensors(st(d))
    tensors.set('model.layers.0.block_sparse_moe.experts.4.w1.weight', tensors.get('model.layers.0.block_sparse_moe.experts.0.w1.weight')!)
    writeTensors(st(d), tensors)
    rejects(() => open(d), 'TENSOR_UNUSED', /'model\.layers\.0\.block_sparse_moe\.experts\.4\.w1\.weight' \(expert 4 >= the 4 experts/)

    const d2 = model({ family: 'olmoe' })
    const t2 = readTensors(st(d2))
    t2.set('model.layers.2.input_layernorm.weight', t2.get('model.norm.weight')!)
    writeTensors(st(d2), t2)
    rejects(() => open(d2), 'TENSOR_UNUSED', /'model\.layers\.2\.input_layernorm\.weight' \(layer 2 >= num_hidden_layers 2\)/)

    const d3 = path.join(root, 'ds-no-shared')
    writeTinyDeepseek(d3, { version: 'v2', seed: 5 })
    editJson(path.join(d3, 'config.json'), j => { j.n_shared_experts = null })
    rejects(() => open(d3), 'TENSOR_UNUSED', /'model\.layers\.1\.mlp\.shared_experts\.down_proj\.weight'/, /config\.json turns some of these modules off/)
  })

  it('an lm_head that differs from tied embeddings is an error; an identical copy is fine', () => {
    const d = model()
    editJson(path.join(d, 'config.json'), j => { j.tie_word_embeddings = true })
    rejects(() => open(d), 'TENSOR_UNUSED', /'lm_head\.weight' \(tie_word_embeddings is true/)
    const tensors = readTensors(st(d))
    tensors.set('lm_head.weight', tensors.get('model.embed_tokens.weight')!)
    writeTensors(st(d), tensors)
    assert.deepEqual(open(d).unused.map(u => [u.name, u.reason]), [['lm_head.weight', 'tied-copy']])
  })

  it('unrecognised float tensors load with one warning naming them', () => {
    const d = model({ family: 'qwen3_moe' })
    const tensors = readTensors(st(d))
    tensors.set('model.layers.0.self_attn.rotary_emb.inv_freq', { dtype: 'F32', shape: [2], bytes: new Uint8Array(8) })
    tensors.set('model.extra_head.weight', { dtype: 'BF16', shape: [2], bytes: new Uint8Array(4) })
    writeTensors(st(d), tensors)
    const warnings: string[] = []
    const ckpt = open(d, { warn: m => warnings.push(m) })
    assert.equal(warnings.length, 1)
    assert.match(warnings[0], /2 stored tensor\(s\) are not part of Qwen3MoeForCausalLM and are ignored: .*model\.extra_head\.weight/)
    assert.match(warnings[0], /rotary_emb\.inv_freq/)
    assert.ok(!ckpt.tensors.has('model.extra_head.weight'))
  })

  it('used tensors of an unsupported dtype stay an error', () => {
    const d = model()
    editHeader(st(d), h => { h['model.norm.weight'].dtype = 'I32' })
    rejects(() => open(d), 'TENSOR_DTYPE', /model\.safetensors: tensor 'model\.norm\.weight' has dtype I32, but the model computes with it/)
  })

  it('case 07: unused I64 / BOOL / F64 tensors load header-only and score exactly like the plain checkpoint', async () => {
    const d = model({ seed: 11 })
    const plain = open(d)
    const ids = [0, 17, 42, 99, 3, 250, 8]
    const score = async (c: typeof plain) => {
      const s = await createLocalScorer(c, emptyEdits(), { device: 'cpu', threads: 1 })
      try { return (await s.score([{ prefix: ids, branches: [], scorePrefixFrom: 1 }]))[0].prefix } finally { await s.release() }
    }
    const want = await score(plain)
    const tensors = readTensors(st(d))
    tensors.set('model.layers.0.self_attn.rotary_emb.position_ids', { dtype: 'I64', shape: [1, 8], bytes: new Uint8Array(64) })
    tensors.set('model.causal_mask', { dtype: 'BOOL', shape: [4, 4], bytes: new Uint8Array(16) })
    tensors.set('model.layers.1.self_attn.rotary_emb.inv_freq', { dtype: 'F64', shape: [4], bytes: new Uint8Array(32) })
    writeTensors(st(d), tensors)
    const warnings: string[] = []
    const extra = open(d, { warn: m => warnings.push(m) })
    assert.deepEqual(warnings, [])
    assert.deepEqual(extra.unused.map(u => u.reason), ['other-dtype', 'other-dtype', 'other-dtype'])
    const got = await score(extra)
    assert.equal(Math.max(...got.map((v, i) => Math.abs(v - want[i]))), 0)
  })
})
