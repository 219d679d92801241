// From (model, method, params) to a ready variant: validate, calibrate (cached; one-pass, or
// sequential interleaved with the method's per-layer edits), apply, account.
import { calibrationKey, getCalibrationStats } from '../calibration/cache.ts'
import type { CalibrationProgressUnit } from '../calibration/collect.ts'
import { sequentialStats, type SequentialResult } from '../calibration/sequential.ts'
import type { CalibrationSpec } from '../calibration/source.ts'
import type { StatNeed, StatsData } from '../calibration/stats.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { BUILD_FORMAT_VERSION, methodSeedKey, variantKey } from '../identity/keys.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { Device } from '../ort/ort.ts'
import { applyMethodInWorker, startMethodInWorker } from '../methods/applyInWorker.ts'
import type { AppliedMethod } from '../methods/applyMethod.ts'
import type { CalibrationProcedure, MethodDefinition, MethodReport } from '../methods/defineMethod.ts'
import { layoutOf, loadMethod, methodFileHash, needsOf, procedureOf, resolveParams, unprunedNeedsOf, validateMethod, type ParamValues } from '../methods/registry.ts'
import { accountVariant, type VariantAccounting } from './accounting.ts'

// BUILD_FORMAT_VERSION and the id's derivation live in src/identity/keys.ts.
export { BUILD_FORMAT_VERSION }

export interface PlannedVariant {
  method: MethodDefinition
  params: ParamValues
  /** Every statistic the variant depends on (either procedure). */
  needs: StatNeed[]
  /** The statistics to collect in one pass of the unpruned model (a sweep computes their union up front). */
  onePassNeeds: StatNeed[]
  procedure: CalibrationProcedure
}

/** How a prepared variant was calibrated; stored with the variant row (calibration_json). */
export interface VariantCalibration {
  key: string
  fromCache: boolean
  seconds: number
  tokens: number
  /** 'sequential': each layer calibrated on the model with the earlier layers already edited. */
  procedure: CalibrationProcedure
  /** Sequential only: seconds of the one-pass statistics read from the unpruned model (NAEE progressive), 0 when cached. */
  unprunedSeconds?: number
}

export interface PreparedVariant {
  method: string
  params: ParamValues
  variantId: string
  edits: VariantEdits
  report: MethodReport
  accounting: VariantAccounting
  warnings: string[]
  calibration: VariantCalibration | null
  transformSeconds: number
}

/** Loads the method and checks everything that can be checked before calibration. */
export async function planVariant(ckpt: Checkpoint, methodName: string, given: ParamValues): Promise<PlannedVariant> {
  const method = await loadMethod(methodName)
  const params = resolveParams(method, given)
  validateMethod(method, params, layoutOf(ckpt))
  const needs = needsOf(method, params)
  const unpruned = unprunedNeedsOf(method, params)
  const procedure = needs.length ? procedureOf(method, params) : 'one-pass'
  return {
    method, params, procedure,
    needs: [...new Set([...needs, ...unpruned])],
    onePassNeeds: procedure === 'sequential' ? unpruned : [...new Set([...needs, ...unpruned])],
  }
}

type VariantPlanOf = { method: MethodDefinition; params: ParamValues; needs: readonly StatNeed[]; procedure?: CalibrationProcedure }

export function variantId(ckpt: Checkpoint, plan: VariantPlanOf, calibrationKey: string | null): string {
  return variantKey({ ...variantKeyFields(ckpt, plan, calibrationKey), methodCode: methodFileHash(plan.method.name) })
}

/** The seed of the method's ctx.rng (identity/keys.ts methodSeedKey: the variant id less the code hash). */
function seedOf(ckpt: Checkpoint, plan: VariantPlanOf, calibrationKey: string | null): string {
  return methodSeedKey(variantKeyFields(ckpt, plan, calibrationKey))
}

function variantKeyFields(ckpt: Checkpoint, plan: VariantPlanOf, calibrationKey: string | null) {
  return { modelId: ckpt.fingerprint(), method: plan.method.name, params: plan.params, calibrationKey: plan.needs.length ? calibrationKey : null, sequential: plan.procedure === 'sequential' }
}

export interface PrepareOptions {
  calibration: CalibrationSpec
  device: Device
  threads: number
  /** Statistics for every planned method at once (a sweep asks for the union, so it calibrates once). */
  extraNeeds?: readonly StatNeed[]
  /** Progress of calibration; `what` says what is counted (sequences, or sequences × MoE layers). */
  onCalibration?: (done: number, total: number, what?: CalibrationProgressUnit) => void
}

export async function calibrateFor(ckpt: Checkpoint, needs: readonly StatNeed[], options: PrepareOptions): Promise<{ data: StatsData; key: string; fromCache: boolean } | null> {
  if (needs.length === 0) return null
  return getCalibrationStats(ckpt, options.calibration, needs, { device: options.device, threads: options.threads, onProgress: options.onCalibration })
}

export async function prepareVariant(ckpt: Checkpoint, plan: PlannedVariant, options: PrepareOptions): Promise<PreparedVariant> {
  if (plan.procedure === 'sequential') return prepareSequential(ckpt, plan, options)
  const needs = [...new Set([...plan.needs, ...(options.extraNeeds ?? [])])]
  const calib = plan.needs.length ? await calibrateFor(ckpt, needs, options) : null
  const id = variantId(ckpt, plan, calib?.key ?? null)
  // In a worker thread: the main thread's timers (lease heartbeats) and signals run while the method computes.
  const applied = await applyMethodInWorker(plan.method, plan.params, ckpt, calib?.data, seedOf(ckpt, plan, calib?.key ?? null))
  return {
    method: plan.method.name, params: plan.params, variantId: id, edits: applied.edits, report: applied.report,
    accounting: accountVariant(ckpt, applied.edits, calib?.data),
    warnings: applied.warnings,
    calibration: calib ? { key: calib.key, fromCache: calib.fromCache, seconds: calib.data.info.seconds, tokens: calib.data.info.tokens, procedure: 'one-pass' } : null,
    transformSeconds: applied.seconds,
  }
}

/** Sequential calibration: the method edits each MoE layer as soon as that layer's statistics are in. */
async function prepareSequential(ckpt: Checkpoint, plan: PlannedVariant, options: PrepareOptions): Promise<PreparedVariant> {
  const unprunedNeeds = [...new Set([...plan.onePassNeeds, ...(options.extraNeeds ?? [])])]
  const unpruned = plan.onePassNeeds.length ? await calibrateFor(ckpt, unprunedNeeds, options) : null
  const key = await calibrationKey(ckpt, options.calibration)
  const id = variantId(ckpt, plan, key)
  const run = await startMethodInWorker(plan.method, plan.params, ckpt, seedOf(ckpt, plan, key), unpruned?.data)
  let seq: SequentialResult
  let applied: AppliedMethod
  try {
    seq = await sequentialStats(ckpt, options.calibration, needsOf(plan.method, plan.params), run, { device: options.device, threads: options.threads, onProgress: options.onCalibration })
    applied = await run.finish()
  } finally {
    await run.close() // the worker, when calibration failed between two layers
  }
  const info = seq.data.info
  return {
    method: plan.method.name, params: plan.params, variantId: id, edits: applied.edits, report: applied.report,
    accounting: accountVariant(ckpt, applied.edits, seq.data),
    warnings: applied.warnings,
    calibration: {
      key: seq.key, fromCache: info.layersFromCache === layoutOf(ckpt).layers.length, seconds: info.seconds, tokens: info.tokens, procedure: 'sequential',
      ...(unpruned ? { unprunedSeconds: unpruned.fromCache ? 0 : unpruned.data.info.seconds } : {}),
    },
    // The method ran interleaved with calibration; its own time is inside `seconds`.
    transformSeconds: applied.seconds,
  }
}
