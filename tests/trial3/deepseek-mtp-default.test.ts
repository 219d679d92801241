// DeepSeek-V3's multi-token-prediction layer (model.layers.<num_hidden_layers>.*) is accounted for by
// num_nextn_predict_layers. transformers v5 calls it num_mtp_layers (attribute_map onto
// num_nextn_predict_layers, class default 1); a config.json that omits it, or says num_mtp_layers,
// made the stored MTP layer "a layer beyond num_hidden_layers" and the checkpoint was refused.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { HarnessError } from '../../src/errors.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { writeTinyDeepseek } from '../helpers/tinyDeepseek.ts'
import { tmpDir } from '../helpers/tmp.ts'

function withConfig(src: string, dst: string, edit: (c: Record<string, unknown>) => void): string {
  fs.mkdirSync(dst)
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dst, f))
  const c = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8'))
  edit(c)
  fs.writeFileSync(path.join(dst, 'config.json'), JSON.stringify(c))
  return dst
}

describe('DeepSeek-V3 MTP layer count as transformers v5 reads it', () => {
  const root = tmpDir()
  const src = path.join(root, 'src')
  writeTinyDeepseek(src, { version: 'v3', seed: 6, nextnLayers: 1 })

  it('absent (class default 1) and num_mtp_layers load like num_nextn_predict_layers: the MTP tensors are a warning', () => {
    const variants = [
      src,
      withConfig(src, path.join(root, 'absent'), c => { delete c.num_nextn_predict_layers }),
      withConfig(src, path.join(root, 'v5name'), c => { c.num_mtp_layers = c.num_nextn_predict_layers; delete c.num_nextn_predict_layers }),
    ]
    for (const dir of variants) {
      const warnings: string[] = []
      const ckpt = openCheckpoint(dir, { warn: w => warnings.push(w) })
      assert.equal(ckpt.spec.family, 'deepseek_v3')
      assert.ok(warnings.some(w => /multi-token-prediction/.test(w)), `${dir}: ${warnings.join(' | ')}`)
    }
  })

  it('an explicit 0 still refuses stored MTP tensors (a layer the config leaves out)', () => {
    const zero = withConfig(src, path.join(root, 'zero'), c => { c.num_nextn_predict_layers = 0 })
    assert.throws(() => openCheckpoint(zero, { warn: () => {} }), (e: unknown) => e instanceof HarnessError && e.code === 'TENSOR_UNUSED')
  })
})
