// From (model, method, params) to a ready variant: validate, calibrate (cached), apply, account.
import crypto from 'node:crypto'
import { getCalibrationStats } from '../calibration/cache.ts'
import type { CalibrationSpec } from '../calibration/source.ts'
import type { StatNeed, StatsData } from '../calibration/stats.ts'
import type { VariantEdits } from '../engine/hooks.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { Device } from '../runtime/ort.ts'
import { applyMethod } from '../methods/applyMethod.ts'
import type { MethodDefinition, MethodReport } from '../methods/defineMethod.ts'
import { layoutOf, loadMethod, methodFileHash, needsOf, resolveParams, validateMethod, type ParamValues } from '../methods/registry.ts'
import { accountVariant, type VariantAccounting } from './accounting.ts'

/** Bump when the meaning of a built variant changes (graph semantics, edit encoding). */
export const BUILD_FORMAT_VERSION = 1

export interface PlannedVariant {
  method: MethodDefinition
  params: ParamValues
  needs: StatNeed[]
}

export interface PreparedVariant {
  method: string
  params: ParamValues
  variantId: string
  edits: VariantEdits
  report: MethodReport
  accounting: VariantAccounting
  warnings: string[]
  calibration: { key: string; fromCache: boolean; seconds: number; tokens: number } | null
  transformSeconds: number
}

/** Loads the method and checks everything that can be checked before calibration. */
export async function planVariant(ckpt: Checkpoint, methodName: string, given: ParamValues): Promise<PlannedVariant> {
  const method = await loadMethod(methodName)
  const params = resolveParams(method, given)
  validateMethod(method, params, layoutOf(ckpt))
  return { method, params, needs: needsOf(method, params) }
}

export function variantId(ckpt: Checkpoint, plan: { method: MethodDefinition; params: ParamValues; needs: readonly StatNeed[] }, calibrationKey: string | null): string {
  const identity = {
    v: BUILD_FORMAT_VERSION, model: ckpt.fingerprint(), method: plan.method.name, code: methodFileHash(plan.method.name),
    params: plan.params, calibration: plan.needs.length ? calibrationKey : null,
  }
  return crypto.createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 24)
}

export interface PrepareOptions {
  calibration: CalibrationSpec
  device: Device
  threads: number
  /** Statistics for every planned method at once (a sweep asks for the union, so it calibrates once). */
  extraNeeds?: readonly StatNeed[]
  onCalibration?: (done: number, total: number) => void
}

export async function calibrateFor(ckpt: Checkpoint, needs: readonly StatNeed[], options: PrepareOptions): Promise<{ data: StatsData; key: string; fromCache: boolean } | null> {
  if (needs.length === 0) return null
  return getCalibrationStats(ckpt, options.calibration, needs, { device: options.device, threads: options.threads, onProgress: options.onCalibration })
}

export async function prepareVariant(ckpt: Checkpoint, plan: PlannedVariant, options: PrepareOptions): Promise<PreparedVariant> {
  const needs = [...new Set([...plan.needs, ...(options.extraNeeds ?? [])])]
  const calib = plan.needs.length ? await calibrateFor(ckpt, needs, options) : null
  const id = variantId(ckpt, plan, calib?.key ?? null)
  const applied = await applyMethod(plan.method, plan.params, ckpt, calib?.data, id)
  return {
    method: plan.method.name, params: plan.params, variantId: id, edits: applied.edits, report: applied.report,
    accounting: accountVariant(ckpt, applied.edits, calib?.data),
    warnings: applied.warnings,
    calibration: calib ? { key: calib.key, fromCache: calib.fromCache, seconds: calib.data.info.seconds, tokens: calib.data.info.tokens } : null,
    transformSeconds: applied.seconds,
  }
}
