// A sweep's variants: each planned once (or recorded infeasible), calibrated together per model, and
// prepared once however many cells use it (apply the method, publish its folder, store its row). A
// variant prepared by an earlier run is known by its id and reused while its folder exists.
import fs from 'node:fs'
import path from 'node:path'
import { calibrationKey, harnessHome } from '../calibration/cache.ts'
import type { StatNeed } from '../calibration/stats.ts'
import { contentHash } from '../edits/variantEdits.ts'
import { isVariantFolder, publishVariantFolder, readVariantFiles, variantFolderState } from '../edits/variantFolder.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { releaseSpilled } from '../edits/overrideSpill.ts'
import { withFileErrors } from '../util/fileErrors.ts'
import { errorData, formatError, withContext, type HarnessErrorData } from '../errors.ts'
import { failedVariantKey, variantFolderName } from '../identity/keys.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { ResultsStore } from '../store/resultsStore.ts'
import type { ParamValues } from '../methods/registry.ts'
import { calibrateFor, prepareVariant, variantId, type PlannedVariant } from '../variants/prepare.ts'
import type { SweepInputs } from './inputs.ts'
import type { VariantSpec } from './plan.ts'

export type VariantPlan =
  | { status: 'planned'; plan: PlannedVariant }
  | { status: 'infeasible'; error: HarnessErrorData }

export type PreparedSlot =
  | { status: 'ready'; variantId: string; contentHash: string; dir: string }
  | { status: 'failed'; error: HarnessErrorData }

export interface VariantSlot {
  spec: VariantSpec
  ckpt: Checkpoint
  planned: VariantPlan
  /** Set by the first cell that needs the variant; every other cell awaits the same preparation. */
  preparation?: Promise<PreparedSlot>
}

/** Where the sweep's prepared variants go, and the seconds it spends on them. */
export interface PrepareContext {
  inputs: SweepInputs
  store: ResultsStore
  timings: { transform: number; database: number }
  /** Called while a variant is being prepared (progress label: its calibration or its method). */
  onPreparing?: (label: string) => void
}

const variantDir = (ckpt: Checkpoint, hash: string) => path.join(harnessHome(), 'variants', variantFolderName(ckpt.fingerprint(), hash))

/**
 * The variant of a slot, prepared on first use, and again when its folder has gone since (a `cache
 * prune` from another machine sharing the home, or by hand): workers read the folder for each cell,
 * so a cell must not be sent to one that no longer exists.
 */
export async function prepared(slot: VariantSlot, ctx: PrepareContext): Promise<PreparedSlot> {
  const preparation = (slot.preparation ??= timedTransform(ctx, () => prepareSlot(slot, ctx)))
  const result = await preparation
  if (result.status !== 'ready' || isVariantFolder(result.dir)) return result
  // Cells awaiting the same preparation share the next one: only the first resets it.
  if (slot.preparation === preparation) slot.preparation = undefined
  return prepared(slot, ctx)
}

/**
 * Wall seconds during which at least one variant was being prepared, less its database writes (which
 * `timings.database` counts): preparations overlap when workers ask for several at once, so summing
 * each one's duration overstated the share of the sweep (over 100%).
 */
const transformClocks = new WeakMap<PrepareContext['timings'], { active: number; since: number; database: number }>()
async function timedTransform<T>(ctx: PrepareContext, run: () => Promise<T>): Promise<T> {
  let clock = transformClocks.get(ctx.timings)
  if (!clock) transformClocks.set(ctx.timings, (clock = { active: 0, since: 0, database: 0 }))
  if (clock.active++ === 0) {
    clock.since = performance.now()
    clock.database = ctx.timings.database
  }
  try {
    return await run()
  } finally {
    if (--clock.active === 0) ctx.timings.transform += (performance.now() - clock.since) / 1000 - (ctx.timings.database - clock.database)
  }
}

/**
 * Fails with FILE_ACCESS, before any calibration or method runs, when some of `slots` still need a
 * prepared variant folder and the harness home cannot take one (read-only, or a file in the way):
 * otherwise that would surface only after the expensive work, once per cell. Variants already
 * prepared need no write access.
 */
export async function checkVariantsWritable(slots: readonly VariantSlot[], ctx: PrepareContext): Promise<void> {
  const root = path.join(harnessHome(), 'variants')
  const pending: string[] = []
  for (const slot of slots) {
    if (slot.planned.status === 'infeasible') continue
    // A variant the store knows but whose folder must be rewritten says why (else "prepare" puzzles).
    let why = ''
    const stored = await storedVariant(slot, slot.planned.plan, ctx, m => { why = `: ${m.replace(/^damaged prepared-variant cache: /, 'its folder is damaged, ').replace(/; rebuilding it$/, '')}` })
    if (stored.moved) why = `: its folder names another model folder than ${slot.ckpt.dir}`
    if (!stored.ready) pending.push(`${slot.spec.model} ${slot.spec.method} r=${slot.spec.params.ratio}${why}`)
  }
  if (pending.length === 0) return
  withFileErrors(root, `prepare ${pending.length} variant(s) (${pending.slice(0, 3).join(', ')}${pending.length > 3 ? ', ...' : ''}): their folders go under the harness home; set MOE_HARNESS_HOME to a writable folder`, () => {
    fs.mkdirSync(root, { recursive: true })
    fs.accessSync(root, fs.constants.W_OK)
  })
}

/**
 * The slot's variant as the store and its folder already hold it (`ready`), or none when it must be
 * prepared; `damaged` when the store knows it but its folder failed the check (`warn` was told why);
 * `moved` when the folder is valid but names another model folder than this checkpoint's: workers
 * open the model folder edits.json names, so the folder must be re-published first (its own edits,
 * no method run), else the edits would be scored on whatever that old path holds now.
 */
async function storedVariant(slot: VariantSlot, plan: PlannedVariant, ctx: PrepareContext, warn?: (message: string) => void): Promise<{ ready?: PreparedSlot; damaged: boolean; moved?: { slot: PreparedSlot; edits: VariantEdits } }> {
  const { ckpt } = slot
  const id = variantId(ckpt, plan, plan.needs.length ? await calibrationKey(ckpt, ctx.inputs.calibration(ckpt)) : null)
  const known = ctx.store.variant(id)
  if (known?.status !== 'ready' || !known.content_hash) return { damaged: false }
  const dir = variantDir(ckpt, known.content_hash)
  const state = variantFolderState(dir, warn)
  if (state !== 'valid') return { damaged: state === 'damaged' }
  const ready: PreparedSlot = { status: 'ready', variantId: id, contentHash: known.content_hash, dir }
  const { modelDir, edits } = readVariantFiles(dir)
  return modelDir === ckpt.dir ? { ready, damaged: false } : { damaged: false, moved: { slot: ready, edits } }
}

async function prepareSlot(slot: VariantSlot, ctx: PrepareContext): Promise<PreparedSlot> {
  const { ckpt } = slot
  if (slot.planned.status === 'infeasible') {
    saveFailedVariant(ctx.store, slot, slot.spec.params, slot.planned.error) // recorded so the report lists it
    return { status: 'failed', error: slot.planned.error }
  }
  const plan = slot.planned.plan
  const { calibration, device, workers, threads } = ctx.inputs
  // A damaged folder (truncated edits.json, say) is warned about once, here or when publishing, and rebuilt.
  const { ready, damaged: warned, moved } = await storedVariant(slot, plan, ctx)
  if (ready) return ready
  let result: PreparedSlot
  try {
    if (moved && moved.slot.status === 'ready') {
      // Same weights at another path (the fingerprint matched): point the folder at this checkpoint.
      publishVariantFolder(moved.slot.dir, ckpt.dir, moved.edits, n => ckpt.tensors.get(n)!.dtype)
      return moved.slot
    }
    const name = `${slot.spec.model} ${slot.spec.method} r=${slot.spec.params.ratio}`
    ctx.onPreparing?.(`preparing ${name}`)
    const variant = await prepareVariant(ckpt, plan, {
      calibration: calibration(ckpt), device, threads: workers * threads,
      onCalibration: (d, t) => ctx.onPreparing?.(`preparing ${name}: calibrating ${d}/${t}`),
    })
    const hash = contentHash(variant.edits)
    const dir = variantDir(ckpt, hash)
    publishVariantFolder(dir, ckpt.dir, variant.edits, n => ckpt.tensors.get(n)!.dtype, warned ? () => {} : undefined)
    releaseSpilled(variant.edits) // the folder has its own links or copies; workers read those
    const td = performance.now()
    ctx.store.saveVariant({
      variant_id: variant.variantId, model_id: ckpt.fingerprint(), method: variant.method, params_json: JSON.stringify(variant.params),
      ratio: Number(variant.params.ratio), achieved_ratio: variant.report.achievedRatio, content_hash: hash,
      accounting_json: JSON.stringify(variant.accounting), report_json: JSON.stringify(variant.report), warnings_json: JSON.stringify(variant.warnings),
      calibration_json: JSON.stringify(variant.calibration), transform_seconds: variant.transformSeconds, status: 'ready', error: null,
    })
    ctx.timings.database += (performance.now() - td) / 1000
    result = { status: 'ready', variantId: variant.variantId, contentHash: hash, dir }
  } catch (e) {
    const error = errorData(e, 'METHOD_FAILED', { method: slot.spec.method, phase: 'prepare' })
    saveFailedVariant(ctx.store, slot, plan.params, error)
    result = { status: 'failed', error }
  }
  return result
}

function saveFailedVariant(store: ResultsStore, slot: VariantSlot, params: ParamValues, error: HarnessErrorData): void {
  store.saveVariant({
    variant_id: failedVariantKey(slot.spec), model_id: slot.ckpt.fingerprint(), method: slot.spec.method, params_json: JSON.stringify(params),
    ratio: Number(slot.spec.params.ratio), achieved_ratio: null, content_hash: null, accounting_json: null, report_json: null, warnings_json: null,
    calibration_json: null, transform_seconds: null, status: 'failed', error: formatError(error), error_json: JSON.stringify(error),
  })
}

/**
 * Calibrates each model once for the union of the one-pass statistics its pending variants need
 * (sequential variants calibrate on their own) and stores the calibration's telemetry.
 */
export async function calibrateModels(slots: readonly VariantSlot[], ctx: PrepareContext, timings: { calibration: number }, log: (line: string) => void, progress: (label: string) => void): Promise<void> {
  const { calibration, device, workers, threads, models } = ctx.inputs
  for (const [name, ckpt] of models) {
    const needs = [...new Set(slots.flatMap(s => s.spec.model === name && s.planned.status === 'planned' ? s.planned.plan.onePassNeeds : []))] as StatNeed[]
    if (needs.length === 0) continue
    const tc = performance.now()
    const result = (await calibrateFor(ckpt, needs, { calibration: calibration(ckpt), device, threads: workers * threads, onCalibration: (d, t) => progress(`calibrating ${name} ${d}/${t}`) })
      .catch(e => { throw withContext(e, { phase: 'calibrate' }) }))!
    timings.calibration += (performance.now() - tc) / 1000
    log(`calibration for ${name}: ${result.fromCache ? 'cached' : 'computed'} (${needs.join(', ')})`)
    const routing = result.data.routing
    ctx.store.saveCalibration({
      model_id: ckpt.fingerprint(), calibration_key: result.key, info_json: JSON.stringify(result.data.info),
      routing_load_json: routing ? JSON.stringify(Object.entries(routing).map(([layer, r]) => ({ layer: Number(layer), load: Array.from(r.count, c => c / Math.max(1, r.tokens)) }))) : null,
    })
  }
}
