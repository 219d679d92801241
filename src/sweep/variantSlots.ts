// A sweep's variants: each planned once (or recorded infeasible), calibrated together per model, and
// prepared once however many cells use it (apply the method, publish its folder, store its row). A
// variant prepared by an earlier run is known by its id and reused while its folder exists: through the
// results store, or, when the store does not know it (a new --db, a shard's file), through the harness
// home's index of prepared variants (src/variants/variantIndex.ts), and then recorded in the store.
import fs from 'node:fs'
import path from 'node:path'
import { calibrationCached, calibrationKey, harnessHome } from '../calibration/cache.ts'
import type { CalibrationProgressUnit } from '../calibration/collect.ts'
import type { StatNeed } from '../calibration/stats.ts'
import { contentHash } from '../edits/variantEdits.ts'
import { isVariantFolder, publishVariantFolder, readVariantFiles, variantFolderState } from '../edits/variantFolder.ts'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { releaseSpilled } from '../edits/overrideSpill.ts'
import { withFileErrors } from '../util/fileErrors.ts'
import { errorData, formatError, HarnessError, isMachineFailure, type ErrorCode, type ErrorContext, type HarnessErrorData } from '../errors.ts'
import { failedVariantKey, variantFolderName } from '../identity/keys.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import type { ResultsStore, VariantRow } from '../store/resultsStore.ts'
import type { ParamValues } from '../methods/registry.ts'
import { calibrateFor, prepareVariant, variantId, type PlannedVariant } from '../variants/prepare.ts'
import { findVariantRecord, recordVariant, VARIANT_INDEX_FOLDER, type VariantRecord } from '../variants/variantIndex.ts'
import type { SweepInputs } from './inputs.ts'
import type { VariantSpec } from './plan.ts'

export type VariantPlan =
  | { status: 'planned'; plan: PlannedVariant }
  | { status: 'infeasible'; error: HarnessErrorData }

/**
 * A slot's variant once prepared: ready, failed (stored as a failed variant), or `machine`: its
 * preparation met a limit of this machine (errors.ts isMachineFailure: vm.max_map_count in the method's
 * thread), not the method's failure, so nothing is stored and the sweep stops.
 */
export type PreparedSlot =
  | { status: 'ready'; variantId: string; contentHash: string; dir: string }
  | { status: 'failed'; error: HarnessErrorData }
  | { status: 'machine'; error: HarnessErrorData }

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
  /** One line of the sweep's log (a variant found prepared in the harness home rather than prepared). */
  log?: (line: string) => void
  /** Ctrl-C / SIGTERM: a calibration pass stops at its next batch (it ran to the end, minutes to hours on a real model). */
  signal?: AbortSignal
}

const variantsRoot = () => path.join(harnessHome(), 'variants')
const variantDir = (ckpt: Checkpoint, hash: string) => path.join(variantsRoot(), variantFolderName(ckpt.fingerprint(), hash))
const defaultWarn = (m: string) => process.stderr.write(`warning: ${m}\n`)

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
 * prepared (known to the store, or found by id in the home's index) need no write access.
 */
export async function checkVariantsWritable(slots: readonly VariantSlot[], ctx: PrepareContext): Promise<void> {
  const root = variantsRoot()
  const pending: string[] = []
  for (const slot of slots) {
    if (slot.planned.status === 'infeasible' || slot.preparation) continue // failed with its model (failSlots), or prepared
    // A variant the store knows but whose folder must be rewritten says why (else "prepare" puzzles).
    let why = ''
    const stored = await storedVariant(slot, slot.planned.plan, ctx, m => {
      why = `: ${m.replace(/^damaged prepared-variant cache: /, 'its folder is damaged, ').replace(/^damaged prepared-variant index entry /, 'its index entry is damaged, ').replace(/; (rebuilding it|preparing the variant again)$/, '')}`
    })
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
 * The slot's variant as the store (or, when the store does not know it, the harness home's index) and
 * its folder already hold it (`ready`), or none when it must be prepared; `damaged` when its folder
 * failed the check (`warn` was told why; also a damaged index entry); `moved` when the folder is valid
 * but names another model folder than this checkpoint's: workers open the model folder edits.json
 * names, so the folder must be re-published first (its own edits, no method run), else the edits would
 * be scored on whatever that old path holds now. `record`: the variant's row (the store's, or the
 * index's when `fromIndex`: then this store must record it before its cells are scored).
 */
async function storedVariant(slot: VariantSlot, plan: PlannedVariant, ctx: PrepareContext, warn: (message: string) => void = defaultWarn): Promise<{
  ready?: PreparedSlot; damaged: boolean; moved?: { slot: PreparedSlot; edits: VariantEdits }; record?: VariantRecord; fromIndex?: boolean
}> {
  const { ckpt } = slot
  const id = variantId(ckpt, plan, plan.needs.length ? await calibrationKey(ckpt, ctx.inputs.calibration(ckpt)) : null)
  const row = ctx.store.variant(id)
  const stored = row?.status === 'ready' && row.content_hash ? recordOf(row, row.content_hash) : undefined
  // The index is read only when the store does not know the variant: its entry names the same folder
  // (one id, one preparation), and the store's row is what this store's reports already show.
  const found = stored ? undefined : findVariantRecord(variantsRoot(), id, ckpt.fingerprint(), warn)
  const record = stored ?? found?.record
  if (!record) return { damaged: false }
  const dir = variantDir(ckpt, record.content_hash)
  const state = variantFolderState(dir, warn)
  if (state !== 'valid') return { damaged: state === 'damaged' }
  const ready: PreparedSlot = { status: 'ready', variantId: id, contentHash: record.content_hash, dir }
  const { modelDir, edits } = readVariantFiles(dir)
  const facts = { damaged: false, record, fromIndex: Boolean(found) }
  return modelDir === ckpt.dir ? { ready, ...facts } : { ...facts, moved: { slot: ready, edits } }
}

/** A store's ready row as recordReady wrote it (less the store's own columns created_at / error_json). */
function recordOf(row: VariantRow, contentHash: string): VariantRecord {
  const { variant_id, model_id, method, params_json, ratio, achieved_ratio, accounting_json, report_json, warnings_json, calibration_json, transform_seconds } = row
  return { variant_id, model_id, method, params_json, ratio, achieved_ratio, content_hash: contentHash, accounting_json, report_json, warnings_json, calibration_json, transform_seconds, status: 'ready', error: null }
}

/**
 * Records a ready variant in the store, as every store lists it (method, parameters, accounting,
 * calibration, transform time): one path for a variant prepared here and one found in the index.
 */
function recordReady(ctx: PrepareContext, record: VariantRecord): void {
  const td = performance.now()
  ctx.store.saveVariant(record)
  ctx.timings.database += (performance.now() - td) / 1000
}

/**
 * Records that this sweep planned a variant the store already holds (its cells may all be complete):
 * the leaderboard's current variant of a row is the one used last, so a reverted method edit shows the
 * variant the code produces again, not the one the edit made.
 */
function recordUse(ctx: PrepareContext, variantId: string): void {
  const td = performance.now()
  try {
    ctx.store.markVariantUsed(variantId)
  } catch (e) {
    // Bookkeeping only: the variant itself is sound, so a busy or read-only store must not fail it.
    defaultWarn(`could not record that this sweep used variant ${variantId} (${(e as Error).message}); the leaderboard may show another variant of its row as current until a later sweep records it`)
  }
  ctx.timings.database += (performance.now() - td) / 1000
}

/**
 * Records a ready variant in the harness home's index, so a sweep into another store finds it without
 * preparing it. An index that cannot be written costs only that: `warn` when the folder was just
 * written here (the home was writable a moment ago); silent when indexing a variant the store knew
 * (a read-only home serves it as it is).
 */
function indexVariant(record: VariantRecord, warn: boolean): void {
  try {
    recordVariant(variantsRoot(), record)
  } catch (e) {
    if (warn) defaultWarn(`could not record variant ${record.variant_id} in ${path.join(variantsRoot(), VARIANT_INDEX_FOLDER)} (${(e as Error).message}): a sweep into another results store will prepare it again`)
  }
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
  const { ready, damaged: warned, moved, record, fromIndex } = await storedVariant(slot, plan, ctx)
  const name = `${slot.spec.model} ${slot.spec.method} r=${slot.spec.params.ratio}`
  let result: PreparedSlot
  try {
    const reused = ready ?? (moved?.slot.status === 'ready' ? moved.slot : undefined)
    if (reused?.status === 'ready' && record) {
      // Same weights at another path (the fingerprint matched): point the folder at this checkpoint.
      if (moved) publishVariantFolder(reused.dir, ckpt.dir, moved.edits, n => ckpt.tensors.get(n)!.dtype)
      if (fromIndex) {
        ctx.log?.(`variant ${name}: prepared folder ${path.basename(reused.dir)} found by its id in ${path.join(variantsRoot(), VARIANT_INDEX_FOLDER)}; the method is not run again`)
        recordReady(ctx, record)
      } else {
        recordUse(ctx, reused.variantId)
        if (!findVariantRecord(variantsRoot(), reused.variantId, ckpt.fingerprint(), () => {})) indexVariant(record, false) // known to this store only (prepared before the index existed)
      }
      return reused
    }
    ctx.onPreparing?.(`preparing ${name}`)
    const variant = await prepareVariant(ckpt, plan, {
      calibration: calibration(ckpt), device, threads: workers * threads,
      onCalibration: (d, t, what) => ctx.onPreparing?.(`preparing ${name}: calibrating ${calibrationCount(d, t, what)}`),
    })
    const hash = contentHash(variant.edits)
    const dir = variantDir(ckpt, hash)
    publishVariantFolder(dir, ckpt.dir, variant.edits, n => ckpt.tensors.get(n)!.dtype, warned ? () => {} : undefined)
    releaseSpilled(variant.edits) // the folder has its own links or copies; workers read those
    const fresh: VariantRecord = {
      variant_id: variant.variantId, model_id: ckpt.fingerprint(), method: variant.method, params_json: JSON.stringify(variant.params),
      ratio: Number(variant.params.ratio), achieved_ratio: variant.report.achievedRatio, content_hash: hash,
      accounting_json: JSON.stringify(variant.accounting), report_json: JSON.stringify(variant.report), warnings_json: JSON.stringify(variant.warnings),
      calibration_json: JSON.stringify(variant.calibration), transform_seconds: variant.transformSeconds, status: 'ready', error: null,
    }
    recordReady(ctx, fresh)
    indexVariant(fresh, true)
    result = { status: 'ready', variantId: variant.variantId, contentHash: hash, dir }
  } catch (e) {
    const error = errorData(e, 'METHOD_FAILED', { method: slot.spec.method, phase: 'prepare' })
    // Not the method's: stored, it would show on the leaderboard as the method's failure.
    if (isMachineFailure(error)) return { status: 'machine', error }
    saveFailedVariant(ctx.store, slot, plan.params, error)
    result = { status: 'failed', error }
  }
  return result
}

/**
 * Fails `slots` before their preparation with a failure of their model (weights refused, calibration
 * failed): each of their cells then counts as failed in the summary, and each planned variant is stored
 * as a failed variant with `error`, as a variant whose method failed is (the report lists it; a rerun
 * prepares it again). `store` undefined: nothing is stored (the model has no fingerprint to store it under).
 */
export function failSlots(slots: readonly VariantSlot[], error: HarnessErrorData, store: ResultsStore | undefined): void {
  for (const slot of slots) {
    if (slot.planned.status !== 'planned') continue // infeasible: recorded with its own reason when its cells come
    if (store) saveFailedVariant(store, slot, slot.planned.plan.params, error)
    slot.preparation = Promise.resolve({ status: 'failed', error })
  }
}

/**
 * A failure of model `name` as data, its message prefixed by the model's name (a sweep over several
 * models says which one), and the error to throw when it stops the sweep as a whole: a HarnessError
 * carrying the same data; any other error as it is (its stack is the clue).
 */
export function modelFailure(name: string, e: unknown, fallback: ErrorCode, context: ErrorContext): { data: HarnessErrorData; thrown: unknown } {
  const d = errorData(e, fallback, context)
  const data = { ...d, message: `model '${name}': ${d.message}` }
  return { data, thrown: e instanceof HarnessError ? HarnessError.fromData(data) : e }
}

/** Whether a slot was failed before its preparation (failSlots) or is infeasible: none of its cells can be scored. */
const settledFailed = (slot: VariantSlot) => slot.planned.status !== 'planned' || slot.preparation !== undefined

function saveFailedVariant(store: ResultsStore, slot: VariantSlot, params: ParamValues, error: HarnessErrorData): void {
  store.saveVariant({
    variant_id: failedVariantKey(slot.spec), model_id: slot.ckpt.fingerprint(), method: slot.spec.method, params_json: JSON.stringify(params),
    ratio: Number(slot.spec.params.ratio), achieved_ratio: null, content_hash: null, accounting_json: null, report_json: null, warnings_json: null,
    calibration_json: null, transform_seconds: null, status: 'failed', error: formatError(error), error_json: JSON.stringify(error),
  })
}

/**
 * Calibrates each model once for the union of the one-pass statistics its pending variants need
 * (sequential variants calibrate on their own) and stores the calibration's telemetry. A model whose
 * calibration fails (its windows cannot be built, its folder is gone, ...) fails the variants that
 * needed it (failSlots) and the sweep goes on with the others. Only a sweep of a single model left
 * with no variant to score stops as a whole, with that error, as it did before; and so does any sweep
 * whose calibration met a limit of this machine (errors.ts isMachineFailure), storing no failed variant.
 */
export async function calibrateModels(slots: readonly VariantSlot[], ctx: PrepareContext, timings: { calibration: number }, log: (line: string) => void, progress: (label: string) => void): Promise<void> {
  const { calibration, device, workers, threads, models } = ctx.inputs
  for (const [name, ckpt] of models) {
    if (ctx.signal?.aborted) return
    const needing = slots.filter(s => s.spec.model === name && s.planned.status === 'planned' && s.planned.plan.onePassNeeds.length && !settledFailed(s))
    const needs = [...new Set(needing.flatMap(s => s.planned.status === 'planned' ? s.planned.plan.onePassNeeds : []))] as StatNeed[]
    if (needs.length === 0) continue
    // Every variant that needs the statistics already prepared (this store's, or found in the home's
    // index) and no cached pass to read: a full calibration pass would only record the routing load
    // for the report (a read-only shared home, or a pruned calibration cache, paid it on every run).
    if (!(await calibrationCached(ckpt, calibration(ckpt)))) {
      const ready = await Promise.all(needing.map(async s => {
        if (s.planned.status !== 'planned') return false
        const stored = await storedVariant(s, s.planned.plan, ctx, () => {})
        return stored.ready !== undefined || stored.moved !== undefined
      }))
      if (ready.every(Boolean)) {
        log(`calibration for ${name}: skipped, every variant that needs it is prepared`)
        continue
      }
    }
    const tc = performance.now()
    let result: Awaited<ReturnType<typeof calibrateFor>>
    try {
      // Thrown between batches; the pass releases its session (collect.ts) and nothing is cached or stored.
      const onCalibration = (d: number, t: number, what?: CalibrationProgressUnit) => { ctx.signal?.throwIfAborted(); progress(`calibrating ${name} ${calibrationCount(d, t, what)}`) }
      result = (await calibrateFor(ckpt, needs, { calibration: calibration(ckpt), device, threads: workers * threads, onCalibration }))!
    } catch (e) {
      if (ctx.signal?.aborted) return // interrupted, not failed: its variants stay unprepared for the rerun
      const failure = modelFailure(name, e, 'CALIBRATION_FAILED', { phase: 'calibrate' })
      // A limit of this machine is no failure of the model's variants: the sweep stops, nothing stored (errors.ts isMachineFailure).
      if (isMachineFailure(failure.data) || (models.size === 1 && slots.every(s => settledFailed(s) || needing.includes(s)))) throw failure.thrown
      failSlots(needing, failure.data, ctx.store)
      log(`calibration for ${name} failed: ${formatError(failure.data)}`)
      continue
    } finally {
      timings.calibration += (performance.now() - tc) / 1000
    }
    log(`calibration for ${name}: ${result.fromCache ? 'cached' : 'computed'} (${needs.join(', ')})`)
    const routing = result.data.routing
    ctx.store.saveCalibration({
      model_id: ckpt.fingerprint(), calibration_key: result.key, info_json: JSON.stringify(result.data.info),
      routing_load_json: routing ? JSON.stringify(Object.entries(routing).map(([layer, r]) => ({ layer: Number(layer), load: Array.from(r.count, c => c / Math.max(1, r.tokens)) }))) : null,
    })
  }
}

/** "12/24 sequences × MoE layers (MoE layer 2 of 3)": a sweep's calibration count with its unit (a bare "12/24" left it to guess). */
function calibrationCount(done: number, total: number, what?: CalibrationProgressUnit): string {
  return `${done}/${total}${what ? ` ${what.unit}` : ''}${what?.detail ? ` (${what.detail})` : ''}`
}
