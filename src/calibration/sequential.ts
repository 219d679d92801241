// Sequential calibration (methods.md §3): layer L's statistics are collected on the model whose MoE
// layers before L already carry the method's edits, as Wanda's prune_wanda and NAEE's
// progressive_pruning do. Instead of re-running the whole model once per layer, the engine keeps
// the residual stream entering each layer's MLP and runs only the next part of the decoder on it:
// per MoE layer L one graph slice [previous MoE layer's MLP (edited) … layer L's attention] plus a
// "peek" at layer L's unedited MLP for its calibration outputs. Every attention block and dense MLP
// runs once and every MoE block twice (unedited for statistics, edited to go on), against once in
// the one-pass procedure.
//
// Cache: one entry per layer, keyed by the one-pass key (model, data, settings), the needs, the
// layer and a digest of the edits of the earlier layers, so identical prefixes (e.g. ratio 0, or a
// re-run) never recompute. Hidden states are not cached: after a run of cached layers the next
// uncached layer's slice simply starts earlier.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import v8 from 'node:v8'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { overrideDigest } from '../edits/overrideTensor.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { moeLayers } from '../model/modelSpec.ts'
import { calibrationKey, harnessHome, readCacheFile, writeCacheFile } from './cache.ts'
import { layerByLayer, runLayerSlice, windowsNeeded, type CollectOptions } from './collect.ts'
import { calibrationWindows, type CalibrationSpec } from './source.ts'
import type { StatNeed, StatsData } from './stats.ts'

/** Bump when the sequential statistics' definition changes; part of every per-layer cache key. */
export const SEQUENTIAL_VERSION = 1

/** The method being applied, driven one MoE layer at a time (src/methods/applyMethod.ts startMethod). */
export interface LayerwiseMethod {
  /** Edits so far; after layer(L) it holds the edits of every MoE layer up to L. */
  readonly edits: VariantEdits
  layer(index: number, stats: StatsData): Promise<void>
}

export interface SequentialResult {
  /** Every MoE layer's statistics, each collected on the model edited up to the layer before it. */
  data: StatsData
  /** The one-pass key of (model, data, settings) the per-layer entries extend. */
  key: string
  /** Layers read from the cache (all of them: nothing was run). */
  layersFromCache: number
}

/** A stable digest of a set of edits (hooks by layer, override tensors by name). */
export function editsDigest(edits: VariantEdits): string {
  const h = crypto.createHash('sha256')
  for (const layer of Object.keys(edits.layers).map(Number).sort((a, b) => a - b)) {
    const hooks = edits.layers[layer]
    h.update(`L${layer}:`)
    for (const key of Object.keys(hooks).sort()) {
      const v = (hooks as Record<string, unknown>)[key]
      if (key === 'novices') {
        const novices = v as Record<number, Float32Array>
        for (const e of Object.keys(novices).map(Number).sort((a, b) => a - b)) h.update(`n${e}:`).update(new Uint8Array(novices[e].buffer, novices[e].byteOffset, novices[e].byteLength))
      } else {
        h.update(`${key}=${JSON.stringify(v)};`)
      }
    }
  }
  // Digests, not bytes: the same values hash alike in memory and spilled to disk (overrideTensor.ts).
  for (const name of Object.keys(edits.overrides).sort()) h.update(`o:${name}:${overrideDigest(edits.overrides[name])};`)
  return h.digest('hex').slice(0, 32)
}

function layerCacheKey(base: string, needs: readonly StatNeed[], sampleTokens: number, layer: number, edits: VariantEdits): string {
  return crypto.createHash('sha256').update(JSON.stringify({
    v: SEQUENTIAL_VERSION, base, needs: [...needs].sort(), sampleTokens, layer, edits: editsDigest(edits),
  })).digest('hex').slice(0, 32)
}

const TABLES = ['routing', 'expertOutputs', 'expertOutputsAll', 'inputNorms', 'layerSamples', 'layerTargets'] as const

function copyLayer(from: StatsData, to: StatsData, layer: number): void {
  for (const t of TABLES) {
    const v = from[t]?.[layer]
    if (v !== undefined) ((to[t] ??= {}) as Record<number, unknown>)[layer] = v
  }
}

/**
 * Collects `needs` layer by layer while `method` edits each MoE layer right after its statistics
 * are known. Calls method.layer(L, stats) for every MoE layer in ascending order; `stats` holds the
 * sequential entries of layers ≤ L.
 *
 * Cost: about one forward pass plus one extra (edited) MoE block per layer, and one onnxruntime
 * session per MoE layer; memory: the residual stream of the calibration tokens (tokens × hidden_size
 * float32).
 */
export async function sequentialStats(ckpt: Checkpoint, spec: CalibrationSpec, needs: readonly StatNeed[], method: LayerwiseMethod, options: CollectOptions & { cacheDir?: string }): Promise<SequentialResult> {
  const t0 = performance.now()
  const base = await calibrationKey(ckpt, spec)
  const dir = path.join(options.cacheDir ?? harnessHome(), 'calibration', 'sequential')
  const layers = moeLayers(ckpt.spec)
  const sampleTokens = options.sampleTokens ?? 2048
  const data: StatsData = { info: { key: '', needs: [...needs], sequences: spec.sequences, length: spec.length, tokens: 0, source: '', seconds: 0, procedure: 'sequential' } }
  let windows: number[][] | undefined
  // The residual stream of every batch at residual position `position` (0: not started, the graph embeds input_ids).
  let position = 0
  let hidden: Float32Array[] = []
  let fromCache = 0
  let tokens = 0
  const keys: string[] = []
  for (const [li, layer] of layers.entries()) {
    const key = layerCacheKey(base, needs, sampleTokens, layer.index, method.edits)
    keys.push(key)
    const file = path.join(dir, `${key}.v8`)
    const cached = readCacheFile(file, key)
    if (cached) {
      copyLayer(cached, data, layer.index)
      data.info.source = cached.info.source
      tokens = cached.info.tokens
      fromCache++
    } else {
      if (!windows) {
        const w = await calibrationWindows(spec, ckpt.tokenizer())
        windows = windowsNeeded(w.windows, needs, sampleTokens)
        data.info.source = w.fingerprint
      }
      const step = await runLayerSlice(ckpt, method.edits, needs, layer, position, windows, hidden, options,
        done => options.onProgress?.(li * windows!.length + done, layers.length * windows!.length, layerByLayer(li, layers.length)))
      const acc = step.acc
      tokens = step.tokens
      hidden = step.hidden
      position = 2 * layer.index + 1
      const entry: StatsData = { info: { ...data.info, key, tokens, seconds: 0 } }
      acc.finish(entry, layer.index)
      writeCacheFile(file, v8.serialize(entry))
      copyLayer(entry, data, layer.index)
    }
    await method.layer(layer.index, data)
  }
  data.info.key = crypto.createHash('sha256').update(keys.join(',')).digest('hex').slice(0, 32)
  data.info.tokens = tokens
  data.info.layersFromCache = fromCache
  data.info.seconds = (performance.now() - t0) / 1000
  return { data, key: base, layersFromCache: fromCache }
}
