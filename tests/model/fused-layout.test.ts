// transformers v5's fused expert stacks load as the same model as the per-expert Hub layout: every
// tensor reads the same, scores match (masks and neuron top-k included), and each expert is a view
// into the stack, not a copy. Layouts we cannot read say so instead of blaming config.json.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { isHarnessError } from '../../src/errors.ts'
import { emptyEdits, type VariantEdits } from '../../src/edits/variantEdits.ts'
import { createLocalScorer } from '../../src/engine/scorer.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { repackFused } from '../helpers/fusedLayout.ts'
import { readTensors, writeTensors } from '../helpers/rawSafetensors.ts'
import { writeTinyCheckpoint, type TinyOptions } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const root = tmpDir()
const open = (d: string) => openCheckpoint(d, { warn: m => assert.fail(`unexpected warning: ${m}`) })
const ids = [[0, 17, 42, 99, 3, 250, 8, 8, 19], [5, 6, 300, 1, 2]]

async function scores(ckpt: Checkpoint, edits: VariantEdits): Promise<number[]> {
  const s = await createLocalScorer(ckpt, edits, { device: 'cpu', threads: 1 })
  try {
    const res = await s.score(ids.map(prefix => ({ prefix, branches: [], scorePrefixFrom: 1 })))
    return res.flatMap(r => r.prefix)
  } finally {
    await s.release()
  }
}

const cases: [string, TinyOptions][] = [
  ['Mixtral F32', { family: 'mixtral', seed: 21 }],
  ['OLMoE BF16', { family: 'olmoe', seed: 22, dtype: 'BF16' }],
  ['Qwen2-MoE with a shared expert, F16', { family: 'qwen2_moe', seed: 23, dtype: 'F16' }],
  ['Qwen3-MoE with a dense first layer', { family: 'qwen3_moe', seed: 24, mlpOnlyLayers: [0], layers: 3 }],
]

describe('transformers v5 fused experts', () => {
  for (const [label, o] of cases) {
    it(`${label}: same tensors and scores (max |diff| <= 1e-6) as the per-expert layout`, async () => {
      const v4 = path.join(root, `${o.family}-v4`), v5 = path.join(root, `${o.family}-v5`)
      writeTinyCheckpoint(v4, o)
      repackFused(v4, v5)
      const a = open(v4), b = open(v5)
      assert.equal(a.expertLayout, 'per-expert')
      assert.equal(b.expertLayout, 'fused')
      assert.deepEqual([...b.tensors.keys()].sort(), [...a.tensors.keys()].sort())
      for (const name of a.tensors.keys()) assert.deepEqual(b.read(name), a.read(name), name)
      // An expert is a byte range of the stack: no copy of the stack per read.
      const up = b.names.layers.find(l => l.experts)!.experts![1].up
      const entry = b.tensors.get(up)!
      assert.match(path.basename(entry.file), /^model\.safetensors$/)
      assert.equal(entry.byteLength, a.tensors.get(up)!.byteLength)
      const moe = a.spec.layers.find(l => l.kind === 'moe')!.index
      const edits: VariantEdits = { overrides: {}, layers: { [moe]: { disabled: [1], neuronKeep: 0.5 } } }
      for (const e of [emptyEdits(), edits]) {
        const [sa, sb] = [await scores(a, e), await scores(b, e)]
        assert.ok(sa.every(Number.isFinite))
        assert.ok(Math.max(...sa.map((v, i) => Math.abs(v - sb[i]))) <= 1e-6)
      }
    })
  }

  function rejects(d: string, code: string, ...mentions: RegExp[]) {
    let err: unknown
    try { open(d) } catch (e) { err = e }
    assert.ok(isHarnessError(err), String(err))
    assert.equal(err.code, code, err.message)
    for (const m of mentions) assert.match(err.message, m)
    assert.doesNotMatch(err.message, /does not match its config\.json/)
  }

  it('unsupported expert layouts say so, never "does not match its config.json"', () => {
    const v4 = path.join(root, 'u-v4'), v5 = path.join(root, 'u-v5')
    writeTinyCheckpoint(v4, { family: 'qwen3_moe', seed: 25 })
    repackFused(v4, v5)
    const file = path.join(v5, 'model.safetensors')
    const fused = readTensors(file)
    // Transposed [E, d, 2F] stacks (GPT-OSS's is_transposed layout).
    const t = new Map(fused)
    const gu = t.get('model.layers.0.mlp.experts.gate_up_proj')!
    t.set('model.layers.0.mlp.experts.gate_up_proj', { ...gu, shape: [gu.shape[0], gu.shape[2], gu.shape[1]] })
    writeTensors(file, t)
    rejects(v5, 'TENSOR_LAYOUT', /'model\.layers\.0\.mlp\.experts\.gate_up_proj' has shape \[4,32,48\] = \[E, hidden, 2·F\]/, /layout is not supported/)
    // Separate gate / up stacks without a gate_up_proj.
    const s = new Map(fused)
    s.delete('model.layers.1.mlp.experts.gate_up_proj')
    s.delete('model.layers.1.mlp.experts.down_proj')
    s.set('model.layers.1.mlp.experts.gate_proj', { dtype: 'F32', shape: [4, 24, 32], bytes: new Uint8Array(4 * 24 * 32 * 4) })
    writeTensors(file, s)
    rejects(v5, 'TENSOR_LAYOUT', /layer 1 stores its experts as 'model\.layers\.1\.mlp\.experts\.gate_proj' \[4,24,32\]; this expert layout is not supported/)
    // Only half of the fused pair.
    const h = new Map(fused)
    h.delete('model.layers.1.mlp.experts.down_proj')
    writeTensors(file, h)
    rejects(v5, 'TENSOR_LAYOUT', /has 'model\.layers\.1\.mlp\.experts\.gate_up_proj' but not 'model\.layers\.1\.mlp\.experts\.down_proj'/)
    // Both layouts for one layer.
    const both = new Map(fused)
    both.set('model.layers.0.mlp.experts.0.gate_proj.weight', readTensors(path.join(v4, 'model.safetensors')).get('model.layers.0.mlp.experts.0.gate_proj.weight')!)
    writeTensors(file, both)
    rejects(v5, 'TENSOR_LAYOUT', /layer 0 stores its experts twice/)
    // More experts in the stack than config.json has.
    fs.writeFileSync(path.join(v5, 'config.json'), JSON.stringify({ ...JSON.parse(fs.readFileSync(path.join(v4, 'config.json'), 'utf8')), num_experts: 3 }))
    writeTensors(file, fused)
    rejects(v5, 'TENSOR_SHAPE', /fused experts of layer 0 stack 4 \/ 4 experts, but config\.json has 3 experts per layer/)
  })
})
