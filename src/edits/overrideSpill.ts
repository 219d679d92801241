// Where a method's edited tensors go while the variant is being prepared: once the float32 values
// held in memory pass a budget, they are written (in the checkpoint's dtype) to a private folder
// and replaced by StoredOverrides, so magnitude pruning or Wanda over every expert of a real-size
// model holds about one budget of float32 at a time instead of the whole model twice over.
// The folder lives under the harness home when there is one (same disk as the variant folders, so
// publishing hard-links instead of copying; never a RAM-backed /tmp for gigabytes) and is removed
// at exit; a folder left by a killed process on this host is removed by the next one.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { isMainThread, threadId } from 'node:worker_threads'
import { harnessHome } from '../defaults.ts'
import { parseNonNegative } from '../util/envNumber.ts'
import { fail } from '../errors.ts'
import { processAlive } from '../util/processAlive.ts'
import { withFileErrors } from '../util/fileErrors.ts'
import type { DType } from '../model/safetensors.ts'
import { isStoredOverride, storeOverrides, type OverrideTensor, type StoredOverride } from './overrideTensor.ts'

/** Float32 bytes of edited tensors a method may hold in memory before they are stored: $MOE_HARNESS_SPILL_MB, default 512,
 * in megabytes of 10^6 bytes (the unit every size the harness prints is in). */
export function spillBudgetBytes(): number {
  const given = process.env.MOE_HARNESS_SPILL_MB
  if (given === undefined || given === '') return 512e6
  const mb = parseNonNegative(given, true)
  if (mb === undefined) fail('CONFIG_INVALID', `MOE_HARNESS_SPILL_MB must be a number of megabytes >= 0 (or Infinity: never store), got '${given}'; unset it for the default (512).`)
  return mb * 1e6
}

const PREFIX = '.spill-'
const WHAT = "store a method's edited tensors (set MOE_HARNESS_HOME to a writable folder with space, or MOE_HARNESS_SPILL_MB=Infinity to keep them in memory)"
let folder: string | undefined
let created = false
let files = 0

/**
 * This process's spill folder (not created yet): one per process, whichever thread spills. The main
 * thread removes it at exit; a method worker (src/methods/applyWorker.ts) is handed the main thread's
 * path (useSpillFolder) and writes there, so a worker ended mid-method leaves nothing of its own.
 */
export function spillFolderPath(): string {
  if (folder) return folder
  const home = harnessHome()
  const parent = process.env.MOE_HARNESS_HOME || fs.existsSync(home) ? path.join(home, 'variants') : os.tmpdir()
  const dir = path.join(parent, `${PREFIX}${os.hostname()}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`)
  if (isMainThread) process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  return (folder = dir)
}

/** In a method worker: spill into the main thread's folder (spillFolderPath there). */
export function useSpillFolder(dir: string): void {
  folder = dir
}

/** This process's spill folder, created on first use. */
function spillFolder(): string {
  const dir = spillFolderPath()
  if (created) return dir
  const parent = path.dirname(dir)
  withFileErrors(parent, WHAT, () => {
    fs.mkdirSync(parent, { recursive: true })
    removeDeadSpills(parent)
    fs.mkdirSync(dir, { recursive: true }) // an earlier method worker of this process may have made it
  })
  created = true
  return dir
}

/** Removes the spill folders under `parent` of processes on this host that no longer run (killed before their exit hook). */
export function removeDeadSpills(parent: string): void {
  for (const name of fs.readdirSync(parent)) {
    if (spillFolderState(name) === 'dead') fs.rmSync(path.join(parent, name), { recursive: true, force: true })
  }
}

/**
 * What the entry `name` of a variants folder is as a spill folder: 'dead' (this host's, its process
 * gone), 'live' (this host's, running: this process included), 'other-host' (its process cannot be
 * asked: kept), or undefined when it is no spill folder. Shared by removeDeadSpills and `moe-harness cache`.
 */
export function spillFolderState(name: string): 'dead' | 'live' | 'other-host' | undefined {
  if (!name.startsWith(PREFIX)) return undefined
  const mine = `${PREFIX}${os.hostname()}-`
  if (!name.startsWith(mine)) return 'other-host'
  const pid = Number(name.slice(mine.length).split('-')[0])
  if (!Number.isInteger(pid)) return undefined
  return pid === process.pid || processAlive(pid) ? 'live' : 'dead'
}

/**
 * Stores every in-memory tensor of `overrides` in one new file of the spill folder and replaces it
 * there by its StoredOverride (same values, same digest).
 */
export function spillOverrides(overrides: Record<string, OverrideTensor>, dtypeOf: (name: string) => DType): void {
  const pending = Object.fromEntries(Object.entries(overrides).filter(([, t]) => !isStoredOverride(t))) as Record<string, Float32Array>
  if (Object.keys(pending).length === 0) return
  // Named by thread too: method workers of one process spill into one folder, possibly at once.
  const file = path.join(spillFolder(), `overrides-${threadId}-${files++}.safetensors`)
  Object.assign(overrides, withFileErrors(file, WHAT, () => storeOverrides(file, pending, dtypeOf)))
}

/**
 * Removes this process's spill files that hold `edits`' stored tensors, once nothing will read them
 * through `edits` again (the sweep, after publishing the variant folder, which has its own links or copies).
 */
export function releaseSpilled(edits: { overrides: Record<string, OverrideTensor> }): void {
  if (!folder) return
  const used = new Set(Object.values(edits.overrides).filter(isStoredOverride).map((t: StoredOverride) => t.file))
  for (const file of used) if (path.dirname(file) === folder) fs.rmSync(file, { force: true })
}
