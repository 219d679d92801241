// A harness-format variant folder: HF files plus moe_harness_variant.json with the hooks a stock
// HF loader cannot express. Opening such a folder applies them, so it scores as it did when built.
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import { emptyEdits, type VariantEdits } from '../edits/variantEdits.ts'
import { decodeToFloat32, readSafetensorsHeader, readTensorBytes } from './safetensors.ts'

export const VARIANT_FILE = 'moe_harness_variant.json'
export const NOVICES_FILE = 'moe_harness_novices.safetensors'

export interface VariantManifest {
  format: 'moe-harness-variant'
  version: 1
  /** Per MoE layer hooks the HF format cannot express. */
  layers: Record<string, { disabled?: number[]; novices?: number[]; neuronKeep?: number; skipSecondBeta?: number; topK?: number }>
  provenance: Record<string, unknown>
}

export function readVariantHooks(dir: string): VariantEdits | undefined {
  const file = path.join(dir, VARIANT_FILE)
  if (!fs.existsSync(file)) return undefined
  let manifest: VariantManifest
  try {
    manifest = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    fail('VARIANT_INVALID', `${file} is not valid JSON: ${(e as Error).message}`)
  }
  if (manifest.format !== 'moe-harness-variant' || manifest.version !== 1) fail('VARIANT_INVALID', `${file}: unknown variant format ${manifest.format} v${manifest.version}.`)
  const novices = new Map<string, Float32Array>()
  const novFile = path.join(dir, NOVICES_FILE)
  if (fs.existsSync(novFile)) for (const e of readSafetensorsHeader(novFile)) novices.set(e.name, decodeToFloat32(readTensorBytes(e), e.dtype))
  const edits = emptyEdits()
  for (const [layer, h] of Object.entries(manifest.layers)) {
    edits.layers[Number(layer)] = {
      ...(h.disabled ? { disabled: h.disabled } : {}),
      ...(h.neuronKeep !== undefined ? { neuronKeep: h.neuronKeep } : {}),
      ...(h.skipSecondBeta !== undefined ? { skipSecondBeta: h.skipSecondBeta } : {}),
      ...(h.topK !== undefined ? { topK: h.topK } : {}),
      ...(h.novices ? {
        novices: Object.fromEntries(h.novices.map(e => {
          const v = novices.get(`layers.${layer}.novice.${e}`) ?? fail('VARIANT_INVALID', `${NOVICES_FILE} lacks the novice of layer ${layer} expert ${e}.`)
          return [e, v]
        })),
      } : {}),
    }
  }
  return edits
}
