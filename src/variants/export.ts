// Writes a transformed model. When the result is a standard architecture (same number of experts
// removed in every MoE layer, merges, weight edits), it is a plain HuggingFace checkpoint: removed
// experts deleted and renumbered, router rows (and e_score_correction_bias) sliced,
// num_local_experts/num_experts/n_routed_experts updated, merged
// weights written into every member slot. Otherwise (novices, per-token rules, uneven removal) it is
// the same HF files plus moe_harness_variant.json (+ moe_harness_novices.safetensors), which the
// engine applies whenever it opens the folder.
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'
import { mergeEdits, type LayerHooks, type VariantEdits } from '../edits/variantEdits.ts'
import { overrideBytes } from '../edits/overrideTensor.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { setExpertCount } from '../model/configDefaults.ts'
import { moeLayers } from '../model/modelSpec.ts'
import { encodeFromFloat32, writeSafetensors, DTYPE_BYTES, type TensorToWrite } from '../model/safetensors.ts'
import { NOVICES_FILE, VARIANT_FILE, type VariantManifest } from '../model/variantManifest.ts'
import { writeOutputDir, type OutputContext } from '../util/outputPaths.ts'

const SHARD_BYTES = 2 * 1024 ** 3

export type ExportFormat = 'hf' | 'harness'

/** The format a variant can be written in: 'hf' when a stock HF loader would compute exactly the same model. */
export function exportFormat(ckpt: Checkpoint, edits: VariantEdits): ExportFormat {
  const removedCounts = new Set<number>()
  const topKs = new Set<number>() // effective top-k per MoE layer (HC-SMoE may lower it)
  for (const layer of ckpt.spec.layers) {
    if (layer.kind !== 'moe') continue
    const h: LayerHooks = edits.layers[layer.index] ?? {}
    if (Object.keys(h.novices ?? {}).length || h.neuronKeep !== undefined || h.skipSecondBeta !== undefined) return 'harness'
    removedCounts.add(h.disabled?.length ?? 0)
    topKs.add(h.topK ?? layer.topK)
    // A group-limited router reads the sliced experts as n_group contiguous chunks: only an equal
    // removal per group keeps every survivor in its group (DeepSeek n_group > 1).
    if (layer.router.nGroup > 1 && h.disabled?.length) {
      const size = layer.numExperts / layer.router.nGroup
      const perGroup = new Set(Array.from({ length: layer.router.nGroup }, (_, g) => h.disabled!.filter(e => Math.floor(e / size) === g).length))
      if (perGroup.size > 1) return 'harness'
    }
  }
  // One scalar num_experts in config.json cannot describe per-layer counts (reap-mlx#48).
  // Likewise one num_experts_per_tok cannot describe per-layer top-k.
  return removedCounts.size <= 1 && topKs.size <= 1 ? 'hf' : 'harness'
}

/**
 * Writes the variant to `outDir` through the output-path rule (src/util/outputPaths.ts): built in a
 * hidden sibling folder and swapped in, replacing only a transform output moe-harness wrote; never the
 * source model, a folder inside a model, or anything that holds a database, the project or the cwd.
 * Errors: VARIANT_INVALID (format), OUTPUT_UNSAFE (refused path), OUTPUT_FAILED (write error).
 */
export function exportVariant(ckpt: Checkpoint, variantEdits: VariantEdits, outDir: string, provenance: Record<string, unknown>, requested: ExportFormat | 'auto' = 'auto', output: OutputContext = { source: 'the output folder' }): ExportFormat {
  // A harness-format source (its moe_harness_variant.json: novices, neuron top-k, ...) keeps its own
  // hooks under the method's: they were dropped, and the output scored as a different model.
  const edits = ckpt.baseEdits ? mergeEdits(ckpt.baseEdits, variantEdits) : variantEdits
  const possible = exportFormat(ckpt, edits)
  const format = requested === 'auto' ? possible : requested
  if (format === 'hf' && possible !== 'hf') {
    fail('VARIANT_INVALID', 'This variant cannot be a standard HuggingFace checkpoint (novice experts, per-token rules or uneven expert counts per layer); use --format harness or auto.')
  }
  writeOutputDir(outDir, 'transform', { ...output, models: [...(output.models ?? []), ckpt.dir] }, tmp => writeVariantFiles(ckpt, edits, tmp, provenance, format))
  return format
}

/** What an export does to a checkpoint's FP8 weights (fp8Dequantization). */
export interface Fp8Dequantization {
  /** F8 weight tensors read dequantized. */
  tensors: number
  /** The dtype they are written in. */
  writtenAs: 'F32'
  /** On-disk bytes of the source's safetensors files. */
  sourceBytes: number
  /** Bytes of every tensor as written, before any expert is removed (an upper bound for the output). */
  writtenBytesUpperBound: number
}

/**
 * An FP8 checkpoint (F8_E4M3 weights + weight_scale_inv blocks, DeepSeek-V3) is read dequantized
 * (each fp8 value × its 128×128 block's scale, in float32: src/model/safetensors.ts) and exported as
 * F32, with config.json's quantization_config dropped: the output is no longer FP8 and each such
 * weight takes 4 bytes instead of 1 (DeepSeek-V3's ~700 GB become ~2.7 TB). Why F32 and not BF16:
 * an e4m3 value (4 significant bits) times an arbitrary float32 scale needs up to 4 + 24 bits, so BF16
 * (8 bits) would round the very weights the harness scored, and the exported model would not compute
 * the variant that was evaluated; F32 holds the float32 product exactly. Re-quantizing to FP8 is left
 * to the user's tools. null when the checkpoint has no FP8 weights.
 */
export function fp8Dequantization(ckpt: Checkpoint): Fp8Dequantization | null {
  const entries = [...ckpt.tensors.values()]
  const tensors = entries.filter(t => t.fp8).length
  if (tensors === 0) return null
  const sourceBytes = fs.readdirSync(ckpt.dir).filter(f => f.endsWith('.safetensors')).reduce((n, f) => n + fs.statSync(path.join(ckpt.dir, f)).size, 0)
  const writtenBytesUpperBound = entries.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype], 0)
  return { tensors, writtenAs: 'F32', sourceBytes, writtenBytesUpperBound }
}

/** Writes the checkpoint files of the variant into the fresh folder `tmp`. */
function writeVariantFiles(ckpt: Checkpoint, edits: VariantEdits, tmp: string, provenance: Record<string, unknown>, format: ExportFormat): void {
  const config = structuredClone(ckpt.config) as Record<string, unknown>
  // F8 weights are read dequantized and written as F32 (exact; see fp8Dequantization): the result is no longer an fp8 checkpoint.
  if ([...ckpt.tensors.values()].some(t => t.fp8)) delete config.quantization_config
  const tensors: Record<string, TensorToWrite> = {}
  const bindingSource = new Map<string, string>() // member tensor name → source tensor name
  const renamed = new Map<string, string>()
  const skipped = new Set<string>()
  const manifest: VariantManifest = { format: 'moe-harness-variant', version: 1, layers: {}, provenance }
  const novices: Record<string, TensorToWrite> = {}

  for (const layer of ckpt.spec.layers) {
    if (layer.kind !== 'moe') continue
    const h = edits.layers[layer.index] ?? {}
    const names = ckpt.names.layers[layer.index]
    for (const [slot, src] of Object.entries(h.bindings ?? {})) {
      const a = names.experts![Number(slot)], b = names.experts![src]
      bindingSource.set(a.gate, b.gate).set(a.up, b.up).set(a.down, b.down)
    }
    if (format === 'hf' && h.disabled?.length) {
      const kept = Array.from({ length: layer.numExperts }, (_, e) => e).filter(e => !h.disabled!.includes(e))
      for (const e of h.disabled) for (const t of Object.values(names.experts![e])) skipped.add(t)
      kept.forEach((e, i) => {
        const from = names.experts![e], to = names.experts![i]
        renamed.set(from.gate, to.gate).set(from.up, to.up).set(from.down, to.down)
      })
      renamed.set(names.router!, names.router!)
    } else if (format === 'harness') {
      const entry: VariantManifest['layers'][string] = {}
      if (h.disabled?.length) entry.disabled = [...h.disabled]
      if (h.neuronKeep !== undefined) entry.neuronKeep = h.neuronKeep
      if (h.skipSecondBeta !== undefined) entry.skipSecondBeta = h.skipSecondBeta
      if (h.topK !== undefined) entry.topK = h.topK
      const nov = Object.entries(h.novices ?? {})
      if (nov.length) {
        entry.novices = nov.map(([e]) => Number(e)).sort((a, b) => a - b)
        for (const [e, vec] of nov) novices[`layers.${layer.index}.novice.${e}`] = { dtype: 'F32', shape: [vec.length], data: encodeFromFloat32(vec, 'F32') }
      }
      if (Object.keys(entry).length) manifest.layers[String(layer.index)] = entry
    }
  }

  for (const [name, entry] of ckpt.tensors) {
    if (skipped.has(name)) continue
    const source = bindingSource.get(name) ?? name
    const srcEntry = ckpt.tensors.get(source)!
    const override = edits.overrides[source]
    let bytes: Uint8Array = override ? overrideBytes(override, srcEntry.dtype) : ckpt.readRaw(source)
    let shape = entry.shape
    const layer = ckpt.spec.layers.find(l => ckpt.names.layers[l.index].router === name || ckpt.names.layers[l.index].correctionBias === name)
    if (format === 'hf' && layer?.kind === 'moe' && edits.layers[layer.index]?.disabled?.length) {
      // Slice the router rows (and DeepSeek-V3's e_score_correction_bias entries) of the removed experts.
      const disabled = edits.layers[layer.index].disabled!
      const rowBytes = (entry.shape[1] ?? 1) * DTYPE_BYTES[entry.dtype]
      const rows = Array.from({ length: layer.numExperts }, (_, e) => e).filter(e => !disabled.includes(e))
      const out = new Uint8Array(rows.length * rowBytes)
      rows.forEach((e, i) => out.set(bytes.subarray(e * rowBytes, (e + 1) * rowBytes), i * rowBytes))
      bytes = out
      shape = [rows.length, ...entry.shape.slice(1)]
    }
    tensors[renamed.get(name) ?? name] = { dtype: entry.dtype, shape, data: bytes }
  }

  if (format === 'hf') {
    const removed = ckpt.spec.layers.map(l => edits.layers[l.index]?.disabled?.length ?? 0).find(n => n > 0) ?? 0
    if (removed) {
      setExpertCount(config, ckpt.spec.family, moeLayers(ckpt.spec)[0].numExperts - removed)
    }
    // HC-SMoE's top_k := num_groups (hcsmoe/merging-mixtral.py sets config.num_experts_per_tok); uniform here.
    const topK = ckpt.spec.layers.map(l => edits.layers[l.index]?.topK).find(k => k !== undefined)
    if (topK !== undefined) config.num_experts_per_tok = topK
  }
  fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(config, null, 2))
  writeShards(tmp, tensors)
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) {
    if (fs.existsSync(path.join(ckpt.dir, f))) fs.copyFileSync(path.join(ckpt.dir, f), path.join(tmp, f))
  }
  if (format === 'harness') {
    fs.writeFileSync(path.join(tmp, VARIANT_FILE), JSON.stringify(manifest, null, 2))
    if (Object.keys(novices).length) writeSafetensors(path.join(tmp, NOVICES_FILE), novices)
  } else {
    fs.writeFileSync(path.join(tmp, 'moe_harness_provenance.json'), JSON.stringify(provenance, null, 2))
  }
}

function writeShards(dir: string, tensors: Record<string, TensorToWrite>): void {
  const names = Object.keys(tensors).sort()
  const total = names.reduce((s, n) => s + tensors[n].data.byteLength, 0)
  if (total <= SHARD_BYTES) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors)
    return
  }
  const shards: string[][] = [[]]
  let size = 0
  for (const n of names) {
    if (size + tensors[n].data.byteLength > SHARD_BYTES && shards[shards.length - 1].length) { shards.push([]); size = 0 }
    shards[shards.length - 1].push(n)
    size += tensors[n].data.byteLength
  }
  const weightMap: Record<string, string> = {}
  shards.forEach((group, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`
    writeSafetensors(path.join(dir, file), Object.fromEntries(group.map(n => [n, tensors[n]])))
    for (const n of group) weightMap[n] = file
  })
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2))
}
