// Runs a method against a checkpoint and calibration statistics, recording every edit as
// VariantEdits. Whole-model methods run `apply` once; per-layer methods run `applyLayer` for every
// MoE layer in order, either all at once (one-pass statistics) or interleaved with the sequential
// calibration engine (src/calibration/sequential.ts), which reads `edits` after each layer.
// Plugin exceptions are re-labelled METHOD_FAILED with the method's name and phase as error fields.
import { inspect } from 'node:util'
import { fail, failIn, HarnessError, isMachineFailure } from '../errors.ts'
import { emptyEdits, validateEdits, type LayerHooks, type VariantEdits } from '../edits/variantEdits.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { decodeToFloat32, encodeFromFloat32 } from '../model/safetensors.ts'
import { isStoredOverride, overrideValues } from '../edits/overrideTensor.ts'
import { spillBudgetBytes, spillOverrides } from '../edits/overrideSpill.ts'
import { mulberry32, seedFromString } from '../util/rng.ts'
import { statsView, type CalibrationStats, type StatsData } from '../calibration/stats.ts'
import type { LayerReport, MethodContext, MethodDefinition, MethodReport } from './defineMethod.ts'
import { isCodingError, layoutOf, needsOf, pluginLocation, strictParams, unprunedNeedsOf, type ParamValues } from './registry.ts'

export interface AppliedMethod {
  edits: VariantEdits
  report: MethodReport
  warnings: string[]
  seconds: number
}

/** A method being applied layer by layer. */
export interface MethodRun {
  /** The edits so far (live object: read it after each layer). */
  readonly edits: VariantEdits
  /** applyLayer for MoE layer `index`, with statistics that hold (at least) that layer. */
  layer(index: number, stats: StatsData): Promise<void>
  /** The whole-model `apply` with every layer's statistics (methods without applyLayer). */
  whole(stats: StatsData): Promise<void>
  /** Validates the edits and returns the combined report. */
  finish(): AppliedMethod
}

/** A returned value as the method's author would write it (JSON.stringify shows NaN as null and drops undefined fields). */
function shownValue(v: unknown): string {
  return inspect(v, { depth: 2, breakLength: Infinity, maxArrayLength: 8, maxStringLength: 200 })
}

const NO_STATS: StatsData = { info: { key: '', needs: [], sequences: 0, length: 0, tokens: 0, source: 'none', seconds: 0 } }

/** Tensor names that belong to decoder layer `index` (every string in its names entry). */
function layerTensorNames(ckpt: Checkpoint, index: number): Set<string> {
  const out = new Set<string>()
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.add(v)
    else if (Array.isArray(v)) v.forEach(walk)
    else if (v && typeof v === 'object') Object.values(v).forEach(walk)
  }
  walk(ckpt.names.layers[index])
  return out
}

export interface MethodRunOptions {
  /** Float32 bytes of edited tensors held in memory before they are stored to disk (default: spillBudgetBytes()). */
  spillBytes?: number
}

export function startMethod(method: MethodDefinition, params: ParamValues, ckpt: Checkpoint, seedKey: string, unpruned?: StatsData, options: MethodRunOptions = {}): MethodRun {
  let busy = 0 // milliseconds spent inside the method's own code
  const layout = layoutOf(ckpt)
  const edits = emptyEdits()
  const spillBytes = options.spillBytes ?? spillBudgetBytes()
  let held = 0 // float32 bytes of edited tensors in memory
  const warnings: string[] = []
  let stats: StatsData = NO_STATS
  let view: { of: StatsData; view: CalibrationStats } | undefined
  // Layers are named by their decoder index (layout.layers[i].index), which is not the position in
  // layout.layers when the model has dense layers (DeepSeek's first_k_dense_replace).
  const moeLayer = (layer: number) => layout.layers.find(l => l.index === layer) ??
    fail('HOOK_INVALID', `layer ${layer} is not a MoE layer (MoE layers: ${layout.layers.map(l => l.index).join(', ')}); pass a layer's index (layout.layers[i].index), not its position`)
  const hooks = (layer: number): LayerHooks => {
    moeLayer(layer)
    return (edits.layers[layer] ??= {})
  }
  const checkExpert = (layer: number, e: number) => {
    const spec = moeLayer(layer)
    if (!Number.isInteger(e) || e < 0 || e >= spec.numExperts) fail('HOOK_INVALID', `layer ${layer}: expert ${e} is out of range 0..${spec.numExperts - 1}`)
  }
  const needs = needsOf(method, params)
  const unprunedView = statsView(unpruned ?? NO_STATS, unprunedNeedsOf(method, params), { method: method.name, layers: ckpt.spec.layers, name: 'unpruned' })
  const ctx: MethodContext<ParamValues> = {
    params: strictParams(method.name, params),
    layout,
    weights: {
      get(name) {
        const entry = ckpt.tensors.get(name) ?? fail('TENSOR_MISSING', `no tensor '${name}' in the checkpoint`)
        const o = edits.overrides[name]
        return o ? overrideValues(o) : decodeToFloat32(ckpt.readRaw(entry.name), entry.dtype)
      },
      set(name, data) {
        const entry = ckpt.tensors.get(name) ?? fail('TENSOR_MISSING', `no tensor '${name}' in the checkpoint`)
        const numel = entry.shape.reduce((a, b) => a * b, 1)
        if (data.length !== numel) fail('HOOK_INVALID', `weights.set('${name}'): ${data.length} values for shape [${entry.shape}]`)
        // Rounded to the stored dtype now, so what the method reads back is what will be scored and exported.
        const old = edits.overrides[name]
        if (old && !isStoredOverride(old)) held -= old.byteLength
        const rounded = decodeToFloat32(encodeFromFloat32(data, entry.dtype), entry.dtype)
        // Checked here, so the error names the plugin's set() call, not just the tensor after the method ran.
        const bad = rounded.findIndex(v => !Number.isFinite(v))
        if (bad >= 0) {
          fail('HOOK_INVALID', `weights.set('${name}'): value ${data[bad]} at index ${bad} is ${Number.isFinite(data[bad]) ? `${rounded[bad]} in the checkpoint's ${entry.dtype}` : 'not finite'}; edits must be finite (and within ${entry.dtype}'s range)`)
        }
        edits.overrides[name] = rounded
        held += rounded.byteLength
        // Stored in the checkpoint's dtype once over budget: a real-size method never holds the model in float32.
        if (held > spillBytes) {
          spillOverrides(edits.overrides, n => ckpt.tensors.get(n)!.dtype)
          held = 0
        }
      },
      shape: name => (ckpt.tensors.get(name) ?? fail('TENSOR_MISSING', `no tensor '${name}' in the checkpoint`)).shape,
    },
    experts: {
      remove(layer, e) {
        checkExpert(layer, e)
        const h = hooks(layer)
        h.disabled = [...new Set([...(h.disabled ?? []), e])].sort((a, b) => a - b)
      },
      bind(layer, slot, source) {
        checkExpert(layer, slot)
        checkExpert(layer, source)
        const h = hooks(layer)
        if (slot !== source) (h.bindings ??= {})[slot] = source
      },
      setNovice(layer, e, vector) {
        checkExpert(layer, e)
        ;(hooks(layer).novices ??= {})[e] = Float32Array.from(vector)
      },
      removed: layer => edits.layers[layer]?.disabled ?? [],
    },
    runtime: {
      neuronTopK(layer, rho) {
        hooks(layer).neuronKeep = rho
      },
      skipSecondExpert(layer, beta) {
        hooks(layer).skipSecondBeta = beta
      },
      setTopK(layer, k) {
        hooks(layer).topK = k
      },
    },
    // One view per statistics object: a plugin reading ctx.stats in a loop built a view (and its wrapped layer objects) per read.
    get stats() {
      if (view?.of !== stats) view = { of: stats, view: statsView(stats, needs, { method: method.name, layers: ckpt.spec.layers }) }
      return view.view
    },
    unpruned: unprunedView,
    rng: mulberry32(seedFromString(seedKey)),
    log: {
      warn: m => { if (!warnings.includes(m)) warnings.push(m) },
      info: () => {},
    },
  }
  const where = (phase?: string) => (phase === undefined ? { method: method.name } : { method: method.name, phase })
  const relabel = (e: unknown, phase: string): never => {
    // The machine, not the method: a full or read-only disk, a bad setting, a limit of this machine
    // (isMachineFailure: the sweep then stores no failed variant) keep their own code and fix.
    if (e instanceof HarnessError && (e.code === 'FILE_ACCESS' || e.code === 'CONFIG_INVALID' || isMachineFailure(e))) failIn(where(phase), e.code, e.message, e)
    // A plugin's own HarnessError keeps its code in the message (METHOD_FAILED: HOOK_INVALID: ...);
    // every message names the line of the method's code that threw or made the failing call.
    const at = pluginLocation(e, method.name)
    if (e instanceof HarnessError) failIn(where(phase), e.code === 'METHOD_INFEASIBLE' ? e.code : 'METHOD_FAILED', e.code === 'METHOD_INFEASIBLE' ? e.message : `${e.code === 'METHOD_FAILED' ? '' : `${e.code}: `}${e.message}${at}`, e)
    // A thrown plain object (`throw { code: 42 }`) read "[object Object]".
    failIn(where(phase), 'METHOD_FAILED', `${e instanceof Error ? (isCodingError(e) ? `${e.name}: ${e.message}` : e.message) : typeof e === 'string' ? e : shownValue(e)}${at}`, e)
  }
  const file = pluginLocation(undefined, method.name) // ' (thrown by methods/x.ts)' or ''
  const inFile = file.replace(/^ \(thrown by (.*)\)$/, ' ($1)')
  const layerReports: LayerReport[] = []
  let done = 0
  let whole: MethodReport | undefined
  return {
    edits,
    async layer(index, data) {
      if (!method.applyLayer) fail('METHOD_INVALID', `Method '${method.name}' has no applyLayer(ctx, layer); it can only run with one-pass calibration.`)
      const spec = layout.layers[done]
      if (!spec || spec.index !== index) failIn(where('applyLayer'), 'METHOD_FAILED', `layer ${index} out of order (expected ${spec?.index ?? 'none'})`)
      stats = data
      // Edits must stay inside the layer: the sequential engine relies on it (earlier layers are final).
      const ownTensors = layerTensorNames(ckpt, index)
      const before = new Set(Object.keys(edits.overrides))
      const hooksBefore = JSON.stringify(Object.entries(edits.layers).filter(([l]) => Number(l) !== index).map(([l, h]) => [l, Object.keys(h)]))
      let r: LayerReport
      const t0 = performance.now()
      try {
        r = await method.applyLayer(ctx as never, spec)
      } catch (e) {
        relabel(e, `applyLayer ${index}`)
      }
      busy += performance.now() - t0
      if (!r! || typeof r.removed !== 'number' || typeof r.total !== 'number' || !Number.isFinite(r.removed) || !Number.isFinite(r.total)) {
        failIn(where(`applyLayer ${index}`), 'METHOD_FAILED', `must return { removed: number, total: number, notes? }, got ${shownValue(r!)}${inFile}.`)
      }
      if (r.removed < 0 || r.total < 0 || r.removed > r.total) {
        failIn(where(`applyLayer ${index}`), 'METHOD_FAILED', `returned removed ${r.removed} of total ${r.total}; need 0 <= removed <= total (units removed in this layer, of the units the ratio is measured against)${inFile}.`)
      }
      for (const name of Object.keys(edits.overrides)) {
        if (!before.has(name) && !ownTensors.has(name)) failIn(where(`applyLayer ${index}`), 'METHOD_FAILED', `edited tensor '${name}', which is not part of layer ${index}; applyLayer may only edit its own layer${inFile}.`)
      }
      const hooksAfter = JSON.stringify(Object.entries(edits.layers).filter(([l]) => Number(l) !== index).map(([l, h]) => [l, Object.keys(h)]))
      if (hooksAfter !== hooksBefore) failIn(where(`applyLayer ${index}`), 'METHOD_FAILED', `set hooks on another layer; applyLayer may only edit its own layer${inFile}.`)
      layerReports.push(r!)
      done++
    },
    finish() {
      if (method.applyLayer && done !== layout.layers.length) failIn(where(), 'METHOD_FAILED', `applyLayer ran on ${done} of ${layout.layers.length} MoE layers.`)
      let report: MethodReport
      if (method.applyLayer) {
        const removed = layerReports.reduce((s, r) => s + r.removed, 0), total = layerReports.reduce((s, r) => s + r.total, 0)
        const notes: Record<string, unknown[]> = {}
        layerReports.forEach((r, i) => { for (const [k, v] of Object.entries(r.notes ?? {})) (notes[k] ??= Array(layerReports.length).fill(null))[i] = v })
        report = { achievedRatio: total > 0 ? removed / total : 0, ...(Object.keys(notes).length ? { notes } : {}) }
      } else {
        report = whole!
      }
      if (!report || typeof report.achievedRatio !== 'number' || !Number.isFinite(report.achievedRatio)) {
        failIn(where('apply'), 'METHOD_FAILED', `must return { achievedRatio: number, ... }, got ${shownValue(report)}${inFile}.`)
      }
      // The leaderboard's "achieved" column and every curve's x read it as a share, like the requested ratio.
      if (report.achievedRatio < 0 || report.achievedRatio > 1) {
        failIn(where('apply'), 'METHOD_FAILED', `returned achievedRatio ${report.achievedRatio}, outside [0, 1]: it is the share the method actually removed, in the unit of its ratio (e.g. removedShare(layout, experts))${inFile}.`)
      }
      try {
        JSON.stringify(report.notes ?? {})
      } catch (e) {
        failIn(where('apply'), 'METHOD_FAILED', `returned notes that cannot be stored as JSON (${String((e as Error).message).split('\n')[0]}); keep notes to numbers, strings, arrays and plain objects${inFile}.`, e)
      }
      for (const [name, data] of Object.entries(edits.overrides)) {
        // Stored tensors were checked when they were written (storeOverrides).
        if (!isStoredOverride(data) && data.some(v => !Number.isFinite(v))) failIn(where('apply'), 'METHOD_FAILED', `tensor '${name}' has non-finite values after the method ran${inFile}.`)
      }
      try {
        validateEdits(ckpt.spec, edits)
      } catch (e) {
        failIn(where('apply'), 'METHOD_FAILED', `produced an invalid variant: ${(e as Error).message}${inFile}`, e)
      }
      return { edits, report, warnings, seconds: busy / 1000 }
    },
    async whole(data: StatsData) {
      stats = data
      const t0 = performance.now()
      try {
        whole = await method.apply!(ctx as never)
      } catch (e) {
        relabel(e, 'apply')
      }
      busy += performance.now() - t0
    },
  }
}

/** One-pass: every layer's statistics are in `stats` (unpruned model); runs apply, or applyLayer for each layer. */
export async function applyMethod(method: MethodDefinition, params: ParamValues, ckpt: Checkpoint, stats: StatsData | undefined, seedKey: string, unpruned?: StatsData, options: MethodRunOptions = {}): Promise<AppliedMethod> {
  const run = startMethod(method, params, ckpt, seedKey, unpruned ?? stats, options)
  if (method.applyLayer) {
    for (const layer of layoutOf(ckpt).layers) await run.layer(layer.index, stats ?? NO_STATS)
  } else {
    await run.whole(stats ?? NO_STATS)
  }
  return run.finish()
}
