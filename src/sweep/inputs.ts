// What a sweep works on, validated before any expensive work: the tasks with their documents and data
// file hashes, the models (opened and checked), every variant's plan (infeasible ones recorded, not
// thrown), the pool's shape and the calibration each model uses.
import fs from 'node:fs'
import path from 'node:path'
import { defaultCalibration, type CalibrationSpec } from '../calibration/source.ts'
import { allowsNonfinite, type HarnessConfig } from '../config/defineConfig.ts'
import { checkCalibrationLength } from '../config/calibrationLength.ts'
import { defaultThreads } from '../defaults.ts'
import { errorData, HarnessError, withContext } from '../errors.ts'
import { openCheckpoint, type Checkpoint } from '../model/checkpoint.ts'
import { defaultDataDir } from '../paths.ts'
import type { Device } from '../ort/ort.ts'
import type { TaskDefinition } from '../tasks/defineTask.ts'
import { loadTaskDocs, selectDocs } from '../tasks/registry.ts'
import { planVariant } from '../variants/prepare.ts'
import { expandVariants, resolveSweepTasks } from './plan.ts'
import type { VariantSlot } from './variantSlots.ts'

/** A task's selected documents and the data file they came from (its sha256 enters every run key). */
export interface TaskData {
  task: TaskDefinition
  docs: { index: number; doc: unknown }[]
  file: string
  sha256: string
}

export interface SweepInputs {
  config: HarnessConfig
  device: Device
  workers: number
  /** Intra-op threads per worker. */
  threads: number
  tasks: TaskDefinition[]
  taskData: Map<string, TaskData>
  /** Model name → opened checkpoint. */
  models: Map<string, Checkpoint>
  /** Every variant of the config, in config order. */
  slots: VariantSlot[]
  /** The calibration a model's variants use (config values, else the defaults for its context). */
  calibration(ckpt: Checkpoint): CalibrationSpec
}

/**
 * A model of the config, opened and checked (openCheckpoint). A model that cannot be opened (folder
 * missing, config.json or safetensors invalid) stops the sweep here, before any work, as any config
 * error does, its message naming the model's key: with several models, which one to fix or drop.
 * Failures found later (weights, tokenizer, calibration: modelChecks.ts, variantSlots.ts) fail only
 * that model's cells.
 */
function openModel(config: HarnessConfig, name: string, dir: string): Checkpoint {
  try {
    return openCheckpoint(dir, { allowNonfinite: allowsNonfinite(config, name) })
  } catch (e) {
    if (e instanceof HarnessError) e.message = `model '${name}': ${e.message}`
    throw e
  }
}

/**
 * Models of the config that are one checkpoint folder under several names. The store keys a model by
 * its fingerprint and keeps the last name it was recorded under, so the leaderboard showed one of
 * them and the other vanished, silently (a copied line whose path was not changed).
 */
function sameFolderModels(models: Map<string, Checkpoint>): string[] {
  const byFolder = new Map<string, string[]>()
  for (const [name, ckpt] of models) {
    let folder = path.resolve(ckpt.dir)
    try { folder = fs.realpathSync(folder) } catch { /* opened just now; a race leaves the resolved path */ }
    byFolder.set(folder, [...(byFolder.get(folder) ?? []), name])
  }
  return [...byFolder].filter(([, names]) => names.length > 1).map(([folder, names]) =>
    `models ${names.map(n => `'${n}'`).join(' and ')} are the same checkpoint folder ${folder}: they are scored once and are one model in the store and the leaderboard ` +
    `(shown under one of the names); point each at the checkpoint you meant, or drop the extra name from models in the config.`)
}

export async function loadSweepInputs(config: HarnessConfig, baseDir: string, log: (line: string) => void): Promise<SweepInputs> {
  const tasks = await resolveSweepTasks(config)
  const dataDir = config.dataDir ? path.resolve(baseDir, config.dataDir) : defaultDataDir()
  const taskData = new Map<string, TaskData>()
  for (const task of tasks) {
    const loaded = await loadTaskDocs(task, dataDir)
    taskData.set(task.name, { task, docs: selectDocs(task, loaded.docs, config.subset), file: loaded.file, sha256: loaded.sha256 })
  }
  const specs = await expandVariants(config, baseDir)
  const models = new Map<string, Checkpoint>()
  for (const s of specs) if (!models.has(s.model)) models.set(s.model, openModel(config, s.model, s.modelDir))
  for (const line of sameFolderModels(models)) log(`warning: ${line}`)
  const slots: VariantSlot[] = []
  for (const spec of specs) {
    const ckpt = models.get(spec.model)!
    try {
      slots.push({ spec, ckpt, planned: { status: 'planned', plan: await planVariant(ckpt, spec.method, spec.params) } })
    } catch (e) {
      if (!(e instanceof HarnessError) || e.code !== 'METHOD_INFEASIBLE') throw withContext(e, { method: spec.method, phase: 'plan' })
      slots.push({ spec, ckpt, planned: { status: 'infeasible', error: errorData(e, 'METHOD_INFEASIBLE', { method: spec.method, phase: 'plan' }) } })
      log(`skipping ${spec.model}/${spec.method} ${JSON.stringify(spec.params)}: ${e.message}`)
    }
  }
  // Before any calibration: a window longer than a calibrated model's context would exhaust memory.
  if (config.calibration.length !== undefined) {
    for (const slot of slots) {
      if (slot.planned.status === 'planned' && slot.planned.plan.needs.length) {
        checkCalibrationLength(config.calibration.length, slot.ckpt.spec.maxPositions, `model '${slot.spec.model}' (${slot.ckpt.dir})`, { configFile: 'harness.config.ts' })
      }
    }
  }
  const workers = config.pool.workers
  const calibration = (ckpt: Checkpoint): CalibrationSpec => {
    const d = defaultCalibration(ckpt.spec.maxPositions)
    const c = config.calibration
    // A file source is relative to the config's folder, as its models, dataDir and store are (it was
    // read from the current folder: `sweep --config exp/harness.config.ts` from elsewhere failed to find it).
    const source = c.source === 'builtin' || c.source.startsWith('task:') ? c.source : path.resolve(baseDir, c.source)
    return { source, field: c.field, sequences: c.sequences ?? d.sequences, length: c.length ?? d.length, seed: c.seed, dataDir }
  }
  return { config, device: config.device, workers, threads: config.pool.threads ?? defaultThreads(workers), tasks, taskData, models, slots, calibration }
}
