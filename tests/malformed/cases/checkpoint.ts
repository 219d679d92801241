// Broken checkpoints: safetensors bytes, sharded indexes, non-finite and mis-shaped weights.
// `score` opens and checks the whole checkpoint before it builds a session.
import fs from 'node:fs'
import path from 'node:path'
import { editSafetensors, garbage, readJson, readSafetensorsRaw, tensorNames, writeJson, writeSafetensorsRaw } from '../fixtures.ts'
import type { MalformedCase } from './types.ts'

const score = (model: string) => ['score', '--model', model, '--text', 'The quick brown fox']
const ST = ['SAFETENSORS_INVALID']
const EXPERT = 'model.layers.1.block_sparse_moe.experts.2.w1.weight'

/** Splits the base checkpoint into two shards with an index, like the Hub's sharded checkpoints. */
function shard(dir: string): { header0: Record<string, any>; header1: Record<string, any> } {
  const { header, data } = readSafetensorsRaw(path.join(dir, 'model.safetensors'))
  fs.rmSync(path.join(dir, 'model.safetensors'))
  const names = tensorNames(header)
  const half = Math.ceil(names.length / 2)
  const parts = [names.slice(0, half), names.slice(half)]
  const weightMap: Record<string, string> = {}
  const headers = parts.map((list, s) => {
    const file = `model-0000${s + 1}-of-00002.safetensors`
    const h: Record<string, any> = { __metadata__: { format: 'pt' } }
    const chunks: Buffer[] = []
    let at = 0
    for (const n of list) {
      const [b, e] = header[n].data_offsets
      h[n] = { ...header[n], data_offsets: [at, at + e - b] }
      chunks.push(data.subarray(b, e))
      at += e - b
      weightMap[n] = file
    }
    writeSafetensorsRaw(path.join(dir, file), h, Buffer.concat(chunks))
    return h
  })
  writeJson(path.join(dir, 'model.safetensors.index.json'), { metadata: {}, weight_map: weightMap })
  return { header0: headers[0], header1: headers[1] }
}

function setFloat(dir: string, name: string, value: number): void {
  editSafetensors(dir, (header, data) => {
    const [b] = header[name].data_offsets
    data.writeFloatLE(value, b + 4 * 5)
  })
}

export const checkpointCases: MalformedCase[] = [
  {
    name: 'st-garbage-file', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); fs.writeFileSync(path.join(m, 'model.safetensors'), garbage(4096)); return score(m) },
    code: ST, message: /model\.safetensors/,
  },
  {
    name: 'st-header-length-huge', area: 'H3',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      const bytes = fs.readFileSync(path.join(m, 'model.safetensors'))
      bytes.writeBigUInt64LE(1n << 60n, 0)
      fs.writeFileSync(path.join(m, 'model.safetensors'), bytes)
      return score(m)
    },
    code: ST, message: /model\.safetensors.*header/i,
  },
  {
    name: 'st-header-not-json', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); editSafetensors(m, (_h, data) => ({ header: '{"a": [1, 2', data })); return score(m) },
    code: ST, message: /model\.safetensors.*JSON|header/i,
  },
  {
    name: 'st-header-is-array', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); editSafetensors(m, (_h, data) => ({ header: '[1,2,3]', data })); return score(m) },
    code: [...ST, 'TENSOR_MISSING'], message: /model\.safetensors|header|embed_tokens/i,
  },
  {
    name: 'st-empty-file', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); fs.writeFileSync(path.join(m, 'model.safetensors'), ''); return score(m) },
    code: ST, message: /model\.safetensors.*(truncated|empty)/i,
  },
  {
    name: 'st-truncated-data', area: 'H3',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      const file = path.join(m, 'model.safetensors')
      const bytes = fs.readFileSync(file)
      fs.writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length * 0.6)))
      return score(m)
    },
    code: ST, message: /model\.safetensors.*(truncated|past the end|exceeds)/i,
  },
  {
    name: 'st-overlapping-offsets', area: 'H3',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      editSafetensors(m, header => {
        const names = tensorNames(header)
        const a = header[names[3]], b = header[names[4]]
        // b starts inside a and a's former tail stays covered by nobody: same size, shifted back.
        const len = b.data_offsets[1] - b.data_offsets[0]
        b.data_offsets = [a.data_offsets[0] + 4, a.data_offsets[0] + 4 + len]
      })
      return score(m)
    },
    code: ST, message: /overlap|data_offsets/i,
  },
  {
    name: 'st-duplicate-tensor-name', area: 'H3',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      editSafetensors(m, (header, data) => {
        const names = tensorNames(header)
        const dup = names[1]
        // JSON text with the same key twice: JSON.parse would silently keep the last one.
        const entries = names.map(n => `${JSON.stringify(n)}:${JSON.stringify(header[n])}`)
        entries.push(`${JSON.stringify(dup)}:${JSON.stringify(header[names[2]])}`)
        return { header: `{"__metadata__":{"format":"pt"},${entries.join(',')}}`, data }
      })
      return score(m)
    },
    code: ST, message: /duplicate|twice|more than once/i,
  },
  {
    name: 'st-offsets-size-mismatch', area: 'H3',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      editSafetensors(m, header => { header[EXPERT].shape = [header[EXPERT].shape[0] + 1, header[EXPERT].shape[1]] })
      return score(m)
    },
    code: [...ST, 'TENSOR_SHAPE'], message: /experts\.2\.w1/,
  },
  {
    name: 'st-unsupported-dtype', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); editSafetensors(m, header => { header[EXPERT].dtype = 'Q4_K' }); return score(m) },
    code: ['TENSOR_DTYPE', ...ST], message: /Q4_K/,
  },
  {
    name: 'st-gap-between-tensors', area: 'H3',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      editSafetensors(m, (header, data) => {
        // Shift every tensor after the first by 64 bytes: a hole the format does not allow.
        const names = tensorNames(header)
        for (const n of names.slice(1)) header[n].data_offsets = header[n].data_offsets.map((o: number) => o + 64)
        const first = header[names[0]].data_offsets[1]
        return { header, data: Buffer.concat([data.subarray(0, first), Buffer.alloc(64), data.subarray(first)]) }
      })
      return score(m)
    },
    code: ST, message: /contiguous|gap|hole|unused bytes/i,
  },
  {
    name: 'st-is-a-folder', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); fs.rmSync(path.join(m, 'model.safetensors')); fs.mkdirSync(path.join(m, 'model.safetensors')); return score(m) },
    code: ['SAFETENSORS_INVALID', 'CHECKPOINT_NOT_FOUND', 'FILE_ACCESS'], message: /model\.safetensors.*(folder|directory|not a regular file)/i,
  },
  {
    name: 'sharded-missing-shard', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); shard(m); fs.rmSync(path.join(m, 'model-00002-of-00002.safetensors')); return score(m) },
    code: ['CHECKPOINT_NOT_FOUND', 'SAFETENSORS_INVALID', 'TENSOR_MISSING'], message: /model-00002-of-00002\.safetensors/,
  },
  {
    name: 'sharded-tensor-in-two-shards', area: 'H3',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      const { header1 } = shard(m)
      // The first shard also carries a (different) copy of a tensor the index places in the second.
      const name = tensorNames(header1)[0]
      editSafetensors(m, (header, data) => {
        const len = header1[name].data_offsets[1] - header1[name].data_offsets[0]
        header[name] = { ...header1[name], data_offsets: [data.length, data.length + len] }
        return { header, data: Buffer.concat([data, Buffer.alloc(len)]) }
      }, 'model-00001-of-00002.safetensors')
      return score(m)
    },
    // Refused, or read through the index only (as transformers does) with a warning naming the copy.
    code: ['OK', ...ST], message: /model-0000[12]-of-00002\.safetensors/,
  },
  {
    name: 'sharded-index-not-json', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); shard(m); fs.writeFileSync(path.join(m, 'model.safetensors.index.json'), '{"weight_map": {'); return score(m) },
    code: ['SAFETENSORS_INVALID', 'CHECKPOINT_NOT_FOUND', 'CONFIG_INVALID'], message: /model\.safetensors\.index\.json/,
  },
  {
    name: 'sharded-index-names-missing-tensor', area: 'H3',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      shard(m)
      const index = readJson(path.join(m, 'model.safetensors.index.json'))
      index.weight_map['model.layers.0.self_attn.q_proj.weight'] = 'model-00002-of-00002.safetensors'
      writeJson(path.join(m, 'model.safetensors.index.json'), index)
      return score(m)
    },
    code: ['SAFETENSORS_INVALID', 'TENSOR_MISSING'], message: /q_proj/,
  },
  {
    name: 'nan-weight', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); setFloat(m, EXPERT, Number.NaN); return score(m) },
    code: ['TENSOR_NONFINITE', 'NUMERIC_FAILURE', 'SAFETENSORS_INVALID'], message: /NaN|non-finite/i,
  },
  {
    name: 'inf-weight', area: 'H3',
    setup: (dir, fx) => { const m = fx.model(dir); setFloat(m, 'model.embed_tokens.weight', Number.POSITIVE_INFINITY); return score(m) },
    code: ['TENSOR_NONFINITE', 'NUMERIC_FAILURE', 'SAFETENSORS_INVALID'], message: /Inf|non-finite/i,
  },
  {
    name: 'missing-expert-tensor',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      // Removed with its bytes, the later tensors moved up: a well-formed file that lacks one tensor.
      editSafetensors(m, (header, data) => {
        const [b, e] = header[EXPERT].data_offsets
        delete header[EXPERT]
        for (const n of tensorNames(header)) if (header[n].data_offsets[0] >= e) header[n].data_offsets = header[n].data_offsets.map((o: number) => o - (e - b))
        return { header, data: Buffer.concat([data.subarray(0, b), data.subarray(e)]) }
      })
      return score(m)
    },
    code: ['TENSOR_MISSING', 'SAFETENSORS_INVALID'], message: /experts\.2\.w1/,
  },
  {
    name: 'wrong-tensor-shape',
    setup: (dir, fx) => {
      const m = fx.model(dir)
      // Same byte count, transposed shape: only the config can tell.
      editSafetensors(m, header => { header[EXPERT].shape = [...header[EXPERT].shape].reverse() })
      return score(m)
    },
    code: 'TENSOR_SHAPE', message: /experts\.2\.w1/,
  },
  {
    name: 'model-folder-missing',
    setup: dir => score(path.join(dir, 'no-such-model')),
    code: 'CHECKPOINT_NOT_FOUND', message: /no-such-model/,
  },
  {
    name: 'model-is-a-file',
    setup: dir => { fs.writeFileSync(path.join(dir, 'model.bin'), 'not a folder'); return score(path.join(dir, 'model.bin')) },
    code: ['CHECKPOINT_NOT_FOUND', 'FILE_ACCESS'], message: /model\.bin/,
  },
  {
    name: 'no-safetensors-file',
    setup: (dir, fx) => { const m = fx.model(dir); fs.rmSync(path.join(m, 'model.safetensors')); return score(m) },
    code: 'CHECKPOINT_NOT_FOUND', message: /safetensors/,
  },
]
