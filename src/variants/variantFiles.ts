// A prepared variant on disk, for the worker pool: the model path and its edits (hooks as JSON,
// replaced tensors as safetensors in the checkpoint's dtype). Workers rebuild the graph from these.
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import type { LayerHooks, VariantEdits } from '../engine/hooks.ts'
import { decodeToFloat32, encodeFromFloat32, readSafetensorsHeader, readTensorBytes, writeSafetensors, type DType } from '../model/safetensors.ts'

interface EditsJson {
  modelDir: string
  layers: Record<string, Omit<LayerHooks, 'novices'> & { novices?: Record<string, number[]> }>
}

export function writeVariantFiles(dir: string, modelDir: string, edits: VariantEdits, dtypeOf: (name: string) => DType): void {
  const tmp = `${dir}.tmp-${process.pid}`
  fs.rmSync(tmp, { recursive: true, force: true })
  fs.mkdirSync(tmp, { recursive: true })
  const json: EditsJson = { modelDir, layers: {} }
  for (const [l, h] of Object.entries(edits.layers)) {
    const { novices, ...rest } = h
    json.layers[l] = { ...rest, ...(novices ? { novices: Object.fromEntries(Object.entries(novices).map(([e, v]) => [e, Array.from(v)])) } : {}) }
  }
  fs.writeFileSync(path.join(tmp, 'edits.json'), JSON.stringify(json))
  const tensors = Object.fromEntries(Object.entries(edits.overrides).map(([name, data]) => {
    const dtype = dtypeOf(name)
    return [name, { dtype, shape: [data.length], data: encodeFromFloat32(data, dtype) }]
  }))
  if (Object.keys(tensors).length) writeSafetensors(path.join(tmp, 'overrides.safetensors'), tensors)
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(path.dirname(dir), { recursive: true })
  fs.renameSync(tmp, dir)
}

export function readVariantFiles(dir: string): { modelDir: string; edits: VariantEdits } {
  const file = path.join(dir, 'edits.json')
  if (!fs.existsSync(file)) fail('VARIANT_INVALID', `${dir} is not a prepared variant (no edits.json).`)
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as EditsJson
  const layers: VariantEdits['layers'] = {}
  for (const [l, h] of Object.entries(json.layers)) {
    const { novices, ...rest } = h
    layers[Number(l)] = { ...rest, ...(novices ? { novices: Object.fromEntries(Object.entries(novices).map(([e, v]) => [e, Float32Array.from(v)])) } : {}) }
  }
  const overrides: Record<string, Float32Array> = {}
  const ov = path.join(dir, 'overrides.safetensors')
  if (fs.existsSync(ov)) for (const e of readSafetensorsHeader(ov)) overrides[e.name] = decodeToFloat32(readTensorBytes(e), e.dtype)
  return { modelDir: json.modelDir, edits: { layers, overrides } }
}
