// One pass of the (unpruned) model over the calibration windows, accumulating the declared
// statistics (float64) from the graph's calibration outputs. The sequential procedure
// (sequential.ts) reuses the accumulator one layer at a time.
import { fail } from '../errors.ts'
import { emptyEdits, type VariantEdits } from '../edits/variantEdits.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { moeLayers, type MoeLayerSpec } from '../model/modelSpec.ts'
import type { CalibrationOutputs } from '../onnx/moeGraph.ts'
import type { Device } from '../ort/ort.ts'
import { openGraphSession } from '../engine/graphSession.ts'
import type { LayerExpertOutputs, LayerInputNorms, LayerRouting, LayerSamples, StatNeed, StatsData } from './stats.ts'

export interface CollectOptions {
  device: Device
  threads: number
  /** Padded tokens per batch. */
  batchTokens?: number
  /** Tokens per layer kept for 'layerSamples'. */
  sampleTokens?: number
  /**
   * What is counted (`unit`): 'sequences' in one whole pass; 'sequences × MoE layers' layer by layer
   * (collectLayered, sequential), with the layer in `detail`. A bar without it read "0/24".
   */
  onProgress?: (done: number, total: number, what?: CalibrationProgressUnit) => void
  /** Edits applied to the model while collecting (default none: the unpruned model). */
  edits?: VariantEdits
  /** The harness folder the graph cache lives under (default: harnessHome()). */
  cacheDir?: string
  /**
   * One MoE layer at a time (collectLayered) rather than one whole pass; default: layer by layer when a
   * whole pass's outputs per batch exceed WHOLE_PASS_OUTPUT_LIMIT. Same statistics either way.
   */
  layered?: boolean
}

/** What a calibration progress count means (CollectOptions.onProgress). */
export interface CalibrationProgressUnit { unit: string; detail?: string }

/** The unit of a layer-by-layer pass: every sequence through every MoE layer; `li` is the layer's position. */
export function layerByLayer(li: number, layers: number): CalibrationProgressUnit {
  return { unit: 'sequences × MoE layers', detail: `MoE layer ${li + 1} of ${layers}` }
}

export function outputsFor(needs: readonly StatNeed[]): CalibrationOutputs {
  const has = (n: StatNeed) => needs.includes(n)
  return {
    routerLogits: true,
    moeInputs: has('inputNorms') || has('layerSamples'),
    expertOutputs: has('expertOutputs') || has('layerTargets'),
    expertHidden: has('inputNorms'),
    expertOutputsAllTokens: has('expertOutputsAll') || has('layerSamples'),
  }
}

/**
 * The windows the statistics need: every window, except when 'layerSamples' is the only need (NAEE):
 * its sample is the first `sampleTokens` tokens, so later windows would be computed for nothing.
 */
export function windowsNeeded(windows: number[][], needs: readonly StatNeed[], sampleTokens: number): number[][] {
  if (needs.length > 0 && needs.every(n => n === 'layerSamples' || n === 'layerTargets') && windows.length > 0) return windows.slice(0, Math.ceil(sampleTokens / windows[0].length))
  return windows
}

/** Padded rows per batch for windows of this length. */
export function rowsPerBatch(length: number, batchTokens = 4096): number {
  return Math.max(1, Math.floor(batchTokens / length))
}

/** The graph's feeds for a batch of equal-length windows (every token valid, one dummy scored position). */
export function windowFeeds(batch: number[][]) {
  const length = batch[0].length
  const n = batch.length * length
  return {
    input_ids: { type: 'int64' as const, data: BigInt64Array.from(batch.flat().map(BigInt)), dims: [batch.length, length] },
    position_ids: { type: 'int64' as const, data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i % length)), dims: [batch.length, length] },
    branch_ids: { type: 'int64' as const, data: new BigInt64Array(n), dims: [batch.length, length] },
    score_positions: { type: 'int64' as const, data: new BigInt64Array([0n]), dims: [1] },
    score_targets: { type: 'int64' as const, data: new BigInt64Array([0n]), dims: [1] },
  }
}

/**
 * One step of a layer-by-layer pass (the sequential procedure, and one-pass collection of a model whose
 * every layer's outputs would not fit at once): the slice from residual position `position` (0: embed
 * input_ids) to layer `layer`'s MLP input, peeking that MLP for its calibration outputs, over every
 * batch of `windows`. `hidden` holds the residual stream at `position` per batch (ignored at 0).
 * Returns the layer's accumulated statistics and the residual stream at 2·layer + 1 per batch.
 * Memory: one layer's outputs per batch, plus the residual stream of all windows (tokens × hidden × 4 B), twice.
 */
export async function runLayerSlice(
  ckpt: Checkpoint, edits: VariantEdits, needs: readonly StatNeed[], layer: MoeLayerSpec, position: number, windows: number[][], hidden: Float32Array[],
  options: CollectOptions, progress: (done: number) => void,
): Promise<{ acc: LayerAccumulator; hidden: Float32Array[]; tokens: number }> {
  const d = ckpt.spec.hiddenSize
  const session = await openGraphSession(ckpt, edits, { calibration: outputsFor(needs), slice: { from: position, to: 2 * layer.index + 1, peekMlp: true }, precision: CALIBRATION_PRECISION }, options)
  const acc = new LayerAccumulator(layer, d, needs, options.sampleTokens ?? 2048)
  const length = windows[0].length
  const rows = rowsPerBatch(length, options.batchTokens)
  const next: Float32Array[] = []
  let tokens = 0
  try {
    for (let b = 0, start = 0; start < windows.length; b++, start += rows) {
      const batch = windows.slice(start, start + rows)
      const n = batch.length * length
      const feeds = position > 0 ? { ...windowFeeds(batch), hidden_in: { type: 'float32' as const, data: hidden[b]!, dims: [n, d] } } : windowFeeds(batch)
      const out = await session.run(feeds, session.outputNames)
      acc.add(out, n)
      next.push(out.hidden_out!.data as Float32Array)
      tokens += n
      progress(Math.min(windows.length, start + rows))
    }
  } finally {
    await session.release()
  }
  return { acc, hidden: next, tokens }
}

/**
 * Bytes of calibration outputs one batch of a whole-model pass returns (float32, every MoE layer):
 * routed expert outputs (k rows per token), MoE inputs, expert hidden inputs, all-token expert outputs.
 */
function wholePassOutputBytes(ckpt: Checkpoint, needs: readonly StatNeed[], tokensPerBatch: number): number {
  const o = outputsFor(needs)
  return moeLayers(ckpt.spec).reduce((sum, l) => {
    const perToken = (o.expertOutputs ? l.topK * ckpt.spec.hiddenSize : 0) + (o.moeInputs ? ckpt.spec.hiddenSize : 0) +
      (o.expertHidden ? l.topK * l.expertFfn : 0) + (o.expertOutputsAllTokens ? l.numExperts * ckpt.spec.hiddenSize : 0) + l.numExperts
    return sum + 4 * tokensPerBatch * perToken
  }, 0)
}

/** Above this many output bytes per batch, collectStats goes layer by layer (runLayerSlice). */
export const WHOLE_PASS_OUTPUT_LIMIT = 512 * 2 ** 20

/**
 * Statistics are computed in float32 on every device: they are cached and keyed by model and data
 * only (cache.ts calibrationKey), shared by every method, ratio and device, so a GPU's float16
 * default (graphSession.ts defaultPrecision) must not change them.
 */
const CALIBRATION_PRECISION = 'float32'

export async function collectStats(ckpt: Checkpoint, windows: number[][], needs: readonly StatNeed[], info: Omit<StatsData['info'], 'seconds' | 'tokens'>, options: CollectOptions): Promise<StatsData> {
  const layered = options.layered ?? (windows.length > 0 && wholePassOutputBytes(ckpt, needs, rowsPerBatch(windows[0].length, options.batchTokens) * windows[0].length) > WHOLE_PASS_OUTPUT_LIMIT)
  if (layered) return collectLayered(ckpt, windows, needs, info, options)
  const t0 = performance.now()
  const session = await openGraphSession(ckpt, options.edits ?? emptyEdits(), { calibration: outputsFor(needs), precision: CALIBRATION_PRECISION }, options)
  const layers = moeLayers(ckpt.spec)
  const d = ckpt.spec.hiddenSize
  const sampleTokens = options.sampleTokens ?? 2048
  const acc = new Map(layers.map(l => [l.index, new LayerAccumulator(l, d, needs, sampleTokens)]))
  windows = windowsNeeded(windows, needs, sampleTokens)
  const length = windows[0].length
  const rows = rowsPerBatch(length, options.batchTokens)
  let tokens = 0
  try {
    for (let start = 0; start < windows.length; start += rows) {
      const batch = windows.slice(start, start + rows)
      const n = batch.length * length
      const feeds = windowFeeds(batch)
      const wanted = session.outputNames.filter(o => o !== 'logprobs' && o !== 'greedy')
      const out = await session.run(feeds, wanted)
      for (const a of acc.values()) a.add(out, n)
      tokens += n
      options.onProgress?.(Math.min(windows.length, start + rows), windows.length, { unit: 'sequences' })
    }
  } finally {
    await session.release()
  }
  const data: StatsData = { info: { ...info, tokens, seconds: (performance.now() - t0) / 1000 } }
  for (const [index, a] of acc) a.finish(data, index)
  return data
}

/**
 * collectStats one MoE layer at a time (runLayerSlice): the same statistics as one whole pass (the
 * same operations on the same residual stream), with one layer's outputs alive instead of all of
 * them; a whole pass over OLMoE-1B-7B's 16 layers at 2 x 2048 tokens held ~9.7 GB of outputs beside
 * its 13.8 GB of weights and did not fit in 24 GB.
 */
async function collectLayered(ckpt: Checkpoint, windows: number[][], needs: readonly StatNeed[], info: Omit<StatsData['info'], 'seconds' | 'tokens'>, options: CollectOptions): Promise<StatsData> {
  const t0 = performance.now()
  const layers = moeLayers(ckpt.spec)
  windows = windowsNeeded(windows, needs, options.sampleTokens ?? 2048)
  const data: StatsData = { info: { ...info, tokens: 0, seconds: 0 } }
  let position = 0
  let hidden: Float32Array[] = []
  let tokens = 0
  for (const [li, layer] of layers.entries()) {
    const step = await runLayerSlice(ckpt, options.edits ?? emptyEdits(), needs, layer, position, windows, hidden, options,
      done => options.onProgress?.(li * windows.length + done, layers.length * windows.length, layerByLayer(li, layers.length)))
    step.acc.finish(data, layer.index)
    hidden = step.hidden
    position = 2 * layer.index + 1
    tokens = step.tokens
  }
  data.info.tokens = tokens
  data.info.seconds = (performance.now() - t0) / 1000
  return data
}

type Out = Record<string, { data: Float32Array | BigInt64Array | Uint8Array; dims: number[] }>

/** Accumulates one MoE layer's statistics from the graph's calibration outputs, batch by batch. */
export class LayerAccumulator {
  private E: number
  private k: number
  private F: number
  private routing?: LayerRouting
  private outputs?: LayerExpertOutputs
  private counts = new Float64Array(0)
  private allSum?: Float64Array
  private norms?: LayerInputNorms
  private samples?: { inputs: number[]; logits: number[]; outs: number[][]; n: number }
  private ratios: number[] = []
  private targets?: { z: Float64Array; n: number }

  constructor(private layer: MoeLayerSpec, private d: number, private needs: readonly StatNeed[], private sampleCap: number) {
    this.E = layer.numExperts
    this.k = layer.topK
    this.F = layer.expertFfn
    const E = this.E
    this.counts = new Float64Array(E)
    if (needs.includes('routing')) {
      this.routing = {
        tokens: 0, count: this.counts, gateSum: new Float64Array(E), gateSumRenorm: new Float64Array(E), gateSumRaw: new Float64Array(E),
        softmaxSum: new Float64Array(E), logitGram: new Float64Array(E * E), top2Ratios: new Float32Array(0),
      }
    }
    if (needs.includes('expertOutputs')) {
      this.outputs = { sum: new Float64Array(E * d), sumSq: new Float64Array(E * d), normSum: new Float64Array(E), gateNormSum: new Float64Array(E), gateNormSumModel: new Float64Array(E), maxAbs: new Float64Array(E) }
    }
    if (needs.includes('expertOutputsAll')) this.allSum = new Float64Array(E * d)
    if (needs.includes('inputNorms')) {
      this.norms = { gateUp: new Float64Array(E * d), down: new Float64Array(E * this.F), gateUpWeighted: new Float64Array(E * d), downWeighted: new Float64Array(E * this.F) }
    }
    if (needs.includes('layerSamples')) this.samples = { inputs: [], logits: [], outs: Array.from({ length: E }, () => []), n: 0 }
    if (needs.includes('layerTargets')) this.targets = { z: new Float64Array(sampleCap * d), n: 0 }
  }

  add(out: Out, n: number): void {
    const { E, d, F } = this
    const L = this.layer.index
    // The graph's own top-k width: a variant's top-k hook (HC-SMoE) may differ from the config's.
    const k = out[`topk_indices_${L}`].dims[1] ?? this.k
    const logits = out[`router_logits_${L}`].data as Float32Array
    const topI = out[`topk_indices_${L}`].data as BigInt64Array
    const topW = out[`topk_weights_${L}`].data as Float32Array
    // Per token: softmax probabilities (float64) and the graph's own top-k.
    const probs = new Float64Array(n * E)
    const renorm = new Float64Array(n * E) // gate renormalised over the token's top-k, 0 when not routed
    const model = new Float64Array(n * E) // the gate the model applied
    for (let t = 0; t < n; t++) {
      let mx = -Infinity
      for (let e = 0; e < E; e++) mx = Math.max(mx, logits[t * E + e])
      let z = 0
      for (let e = 0; e < E; e++) z += probs[t * E + e] = Math.exp(logits[t * E + e] - mx)
      for (let e = 0; e < E; e++) probs[t * E + e] /= z
      let topSum = 0
      for (let j = 0; j < k; j++) topSum += probs[t * E + Number(topI[t * k + j])]
      for (let j = 0; j < k; j++) {
        const e = Number(topI[t * k + j])
        this.counts[e]++
        renorm[t * E + e] = probs[t * E + e] / topSum
        model[t * E + e] = topW[t * k + j]
      }
    }
    if (this.routing) {
      const r = this.routing
      r.tokens += n
      for (let t = 0; t < n; t++) {
        const row = t * E
        for (let e = 0; e < E; e++) {
          const pr = probs[row + e]
          r.softmaxSum[e] += pr
          if (model[row + e] !== 0 || renorm[row + e] !== 0) {
            r.gateSum[e] += model[row + e]
            r.gateSumRenorm[e] += renorm[row + e]
            r.gateSumRaw[e] += pr
          }
          const zi = logits[row + e]
          for (let j = 0; j < E; j++) r.logitGram[e * E + j] += zi * logits[row + j]
        }
        if (k >= 2) {
          const w1 = probs[row + Number(topI[t * k])], w2 = probs[row + Number(topI[t * k + 1])]
          this.ratios.push(w2 / w1)
        }
      }
    }
    const inputs = out[`moe_input_${L}`]?.data as Float32Array | undefined
    for (let e = 0; e < E; e++) {
      const rowsOut = out[`expert_rows_${L}_${e}`]
      if (!rowsOut) continue
      const rows = rowsOut.data as BigInt64Array
      const y = out[`expert_out_${L}_${e}`]?.data as Float32Array | undefined
      const hidden = out[`expert_hidden_${L}_${e}`]?.data as Float32Array | undefined
      for (let i = 0; i < rows.length; i++) {
        const t = Number(rows[i])
        const gModel = model[t * E + e], gRenorm = renorm[t * E + e]
        if (y && this.outputs) {
          const o = this.outputs
          let sq = 0
          for (let j = 0; j < d; j++) {
            const v = y[i * d + j]
            o.sum[e * d + j] += v
            o.sumSq[e * d + j] += v * v
            sq += v * v
            if (Math.abs(v) > o.maxAbs[e]) o.maxAbs[e] = Math.abs(v)
          }
          const norm = Math.sqrt(sq)
          o.normSum[e] += norm
          o.gateNormSum[e] += gRenorm * norm
          o.gateNormSumModel[e] += gModel * norm
        }
        if (this.norms && inputs) {
          const nm = this.norms
          for (let j = 0; j < d; j++) {
            const x = inputs[t * d + j]
            nm.gateUp[e * d + j] += x * x
            nm.gateUpWeighted[e * d + j] += (gModel * x) ** 2
          }
          if (hidden) {
            for (let j = 0; j < F; j++) {
              const h = hidden[i * F + j]
              nm.down[e * F + j] += h * h
              nm.downWeighted[e * F + j] += (gModel * h) ** 2
            }
          }
        }
      }
    }
    if (this.allSum) {
      for (let e = 0; e < E; e++) {
        const all = out[`expert_out_all_${L}_${e}`].data as Float32Array
        for (let t = 0; t < n; t++) for (let j = 0; j < d; j++) this.allSum[e * d + j] += all[t * d + j]
      }
    }
    if (this.targets && this.targets.n < this.sampleCap) {
      // Z on the same first tokens as the samples: the routed experts' outputs times the family's gates.
      const z = this.targets
      const take = Math.min(n, this.sampleCap - z.n)
      const gate = this.layer.normTopK ? renorm : probs
      for (let e = 0; e < E; e++) {
        const rows = out[`expert_rows_${L}_${e}`].data as BigInt64Array
        const y = out[`expert_out_${L}_${e}`].data as Float32Array
        for (let i = 0; i < rows.length; i++) {
          const t = Number(rows[i])
          if (t >= take) continue
          const g = gate[t * E + e]
          for (let j = 0; j < d; j++) z.z[(z.n + t) * d + j] += g * y[i * d + j]
        }
      }
      z.n += take
    }
    if (this.samples && inputs && this.samples.n < this.sampleCap) {
      const s = this.samples
      const take = Math.min(n, this.sampleCap - s.n)
      for (let t = 0; t < take; t++) {
        for (let j = 0; j < d; j++) s.inputs.push(inputs[t * d + j])
        for (let e = 0; e < E; e++) s.logits.push(logits[t * E + e])
      }
      for (let e = 0; e < E; e++) {
        const all = out[`expert_out_all_${L}_${e}`].data as Float32Array
        for (let i = 0; i < take * d; i++) s.outs[e].push(all[i])
      }
      s.n += take
    }
  }

  finish(data: StatsData, index: number): void {
    if (this.routing) {
      this.routing.top2Ratios = Float32Array.from(this.ratios)
      ;(data.routing ??= {})[index] = this.routing
    }
    if (this.outputs) (data.expertOutputs ??= {})[index] = this.outputs
    if (this.allSum) {
      const tokens = this.routing?.tokens ?? 0
      const mean = this.allSum.map(v => v / Math.max(1, tokens || this.totalTokens()))
      ;(data.expertOutputsAll ??= {})[index] = mean
    }
    if (this.norms) (data.inputNorms ??= {})[index] = this.norms
    if (this.samples) {
      const s = this.samples
      const outs = new Float32Array(this.E * s.n * this.d)
      s.outs.forEach((o, e) => outs.set(o, e * s.n * this.d))
      const samples: LayerSamples = { tokens: s.n, inputs: Float32Array.from(s.inputs), routerLogits: Float32Array.from(s.logits), expertOutputs: outs }
      ;(data.layerSamples ??= {})[index] = samples
    }
    if (this.targets) (data.layerTargets ??= {})[index] = { tokens: this.targets.n, outputs: this.targets.z.slice(0, this.targets.n * this.d) }
  }

  private totalTokens(): number {
    const total = this.counts.reduce((a, b) => a + b, 0) / this.k
    if (!Number.isFinite(total)) fail('CALIBRATION_FAILED', 'calibration produced no tokens')
    return total
  }
}
