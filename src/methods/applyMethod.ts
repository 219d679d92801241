// Runs a method's single `apply` phase against a checkpoint and calibration statistics, recording
// every edit as VariantEdits. Plugin exceptions are re-labelled with the method's name and phase.
import { fail, HarnessError } from '../errors.ts'
import { emptyEdits, validateEdits, type LayerHooks, type VariantEdits } from '../engine/hooks.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { decodeToFloat32, encodeFromFloat32 } from '../model/safetensors.ts'
import { mulberry32, seedFromString } from '../util/rng.ts'
import { statsView, type StatsData } from '../calibration/stats.ts'
import type { MethodContext, MethodDefinition, MethodReport } from './defineMethod.ts'
import { layoutOf, needsOf, type ParamValues } from './registry.ts'

export interface AppliedMethod {
  edits: VariantEdits
  report: MethodReport
  warnings: string[]
  seconds: number
}

export async function applyMethod(method: MethodDefinition, params: ParamValues, ckpt: Checkpoint, stats: StatsData | undefined, seedKey: string): Promise<AppliedMethod> {
  const t0 = performance.now()
  const layout = layoutOf(ckpt)
  const edits = emptyEdits()
  const warnings: string[] = []
  const hooks = (layer: number): LayerHooks => {
    const spec = layout.layers.find(l => l.index === layer)
    if (!spec) fail('HOOK_INVALID', `layer ${layer} is not a MoE layer (MoE layers: ${layout.layers.map(l => l.index).join(', ')})`)
    return (edits.layers[layer] ??= {})
  }
  const checkExpert = (layer: number, e: number) => {
    const spec = layout.layers.find(l => l.index === layer)!
    if (!Number.isInteger(e) || e < 0 || e >= spec.numExperts) fail('HOOK_INVALID', `layer ${layer}: expert ${e} is out of range 0..${spec.numExperts - 1}`)
  }
  const ctx: MethodContext<ParamValues> = {
    params: Object.freeze({ ...params }),
    layout,
    weights: {
      get(name) {
        const entry = ckpt.tensors.get(name) ?? fail('TENSOR_MISSING', `no tensor '${name}' in the checkpoint`)
        const o = edits.overrides[name]
        return o ? o.slice() : decodeToFloat32(ckpt.readRaw(entry.name), entry.dtype)
      },
      set(name, data) {
        const entry = ckpt.tensors.get(name) ?? fail('TENSOR_MISSING', `no tensor '${name}' in the checkpoint`)
        const numel = entry.shape.reduce((a, b) => a * b, 1)
        if (data.length !== numel) fail('HOOK_INVALID', `weights.set('${name}'): ${data.length} values for shape [${entry.shape}]`)
        // Rounded to the stored dtype now, so what the method reads back is what will be scored and exported.
        edits.overrides[name] = decodeToFloat32(encodeFromFloat32(data, entry.dtype), entry.dtype)
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
    },
    stats: statsView(stats ?? { info: { key: '', needs: [], sequences: 0, length: 0, tokens: 0, source: 'none', seconds: 0 } }, needsOf(method, params)),
    rng: mulberry32(seedFromString(seedKey)),
    log: {
      warn: m => { if (!warnings.includes(m)) warnings.push(m) },
      info: () => {},
    },
  }
  let report: MethodReport
  try {
    report = await method.apply(ctx as never)
  } catch (e) {
    if (e instanceof HarnessError) fail(e.code === 'METHOD_INFEASIBLE' ? e.code : 'METHOD_FAILED', `[method ${method.name}] (apply): ${e.message}`, e)
    fail('METHOD_FAILED', `[method ${method.name}] (apply): ${(e as Error)?.message ?? String(e)}`, e)
  }
  if (!report || typeof report.achievedRatio !== 'number' || !Number.isFinite(report.achievedRatio)) {
    fail('METHOD_FAILED', `[method ${method.name}] (apply): must return { achievedRatio: number, ... }, got ${JSON.stringify(report)}.`)
  }
  for (const [name, data] of Object.entries(edits.overrides)) {
    if (data.some(v => !Number.isFinite(v))) fail('METHOD_FAILED', `[method ${method.name}] (apply): tensor '${name}' has non-finite values after the method ran.`)
  }
  try {
    validateEdits(ckpt.spec, edits)
  } catch (e) {
    fail('METHOD_FAILED', `[method ${method.name}] (apply): produced an invalid variant: ${(e as Error).message}`, e)
  }
  return { edits, report, warnings, seconds: (performance.now() - t0) / 1000 }
}
