// Expands a config into variants (model × method × parameter grid × ratio) and cells (variant × task).
import crypto from 'node:crypto'
import path from 'node:path'
import type { HarnessConfig } from '../config/defineConfig.ts'
import { fail, HarnessError } from '../errors.ts'
import { loadMethod, methodNames, parseParamOverrides, type ParamValues } from '../methods/registry.ts'
import type { TaskDefinition } from '../tasks/defineTask.ts'
import { builtInTasks, resolveTasks } from '../tasks/registry.ts'

export interface VariantSpec {
  model: string
  modelDir: string
  method: string
  /** Given parameters (ratio included); defaults are filled in when the variant is planned. */
  params: ParamValues
}

export interface Shard { index: number; count: number }

export function parseShard(text: string | undefined): Shard | undefined {
  if (text === undefined) return undefined
  const m = /^(\d+)\/(\d+)$/.exec(text.trim())
  if (!m || Number(m[2]) < 1 || Number(m[1]) >= Number(m[2])) fail('INVALID_ARGUMENT', `--shard '${text}' must be i/n with 0 <= i < n (e.g. 0/4 .. 3/4, as SLURM_ARRAY_TASK_ID counts).`)
  return { index: Number(m[1]), count: Number(m[2]) }
}

/** Which shard owns a cell: a stable hash, so shards split the work evenly and never overlap. */
export function shardOf(key: string, count: number): number {
  return crypto.createHash('sha256').update(key).digest().readUInt32BE(0) % count
}

/**
 * Which shard owns a cell. Ratio-0 cells of a model and task go to one shard whatever the method: they
 * are the unpruned model for every method that edits nothing at ratio 0, and a shard scores identical
 * edits once (runs are keyed by the edits' content hash), whereas spread over shards by method each shard
 * scored the unpruned model again (with 12 method entries on 16 shards, ~38 extra next to the 185 distinct cells
 * of the default plan). A method whose ratio 0 does edit is scored there all the same.
 */
export function shardOfCell(spec: Pick<VariantSpec, 'model' | 'method' | 'params'>, task: string, count: number): number {
  return shardOf(Number(spec.params.ratio) === 0 ? `${spec.model}|ratio 0|${task}` : cellKey(spec, task), count)
}

/** A cell's identity (shard bookkeeping, `--skip-cells`): model, method, given parameters (ratio included) and task. */
export function cellKey(spec: Pick<VariantSpec, 'model' | 'method' | 'params'>, task: string): string {
  return `${spec.model}|${spec.method}|${JSON.stringify(spec.params)}|${task}`
}

export interface PlannedCell { model: string; method: string; params: ParamValues; task: string; shard: number }

/** Every cell of a config, with the shard (of `shards`) that owns it; no model is opened. */
export async function planCells(config: HarnessConfig, baseDir: string, shards: number): Promise<PlannedCell[]> {
  const specs = await expandVariants(config, baseDir)
  const tasks = await resolveSweepTasks(config)
  return specs.flatMap(spec => tasks.map(t => ({ model: spec.model, method: spec.method, params: spec.params, task: t.name, shard: shardOfCell(spec, t.name, shards) })))
}

function grid(params: Record<string, unknown>): Record<string, unknown>[] {
  let out: Record<string, unknown>[] = [{}]
  for (const [k, v] of Object.entries(params)) {
    const values = Array.isArray(v) ? v : [v]
    out = out.flatMap(o => values.map(x => ({ ...o, [k]: x })))
  }
  return out
}

export async function expandVariants(config: HarnessConfig, baseDir: string): Promise<VariantSpec[]> {
  const entries = config.methods ?? methodNames()
  const specs: VariantSpec[] = []
  for (const [model, dir] of Object.entries(config.models)) {
    for (const entry of entries) {
      const name = typeof entry === 'string' ? entry : entry.method
      const method = await loadMethod(name) // an unknown name is UNKNOWN_NAME with suggestions
      const given = typeof entry === 'string' ? {} : entry.params ?? {}
      if ('ratio' in given) fail('HARNESS_CONFIG_INVALID', `methods[${name}].params.ratio: ratios come from the top-level 'ratios' list.`)
      for (const combo of grid(given)) {
        // Validate names and types now (strings through the same parser as --param k=v).
        let typed: ParamValues
        try {
          typed = parseParamOverrides(method, Object.entries(combo).map(([k, v]) => `${k}=${v}`))
        } catch (e) {
          // Said where the value is: the config, not a --param flag.
          if (e instanceof HarnessError) e.message = `methods[${name}].params in the config: ${e.message.replace(/ \(--param \w+=<\w+>\)/, '').replace(/^--param /, '')}`
          throw e
        }
        for (const ratio of config.ratios) specs.push({ model, modelDir: path.resolve(baseDir, dir), method: name, params: { ...typed, ratio } })
      }
    }
  }
  // A value listed twice (ratios [0.5, 0.5], a method entry repeated, a grid [true, true]) is one
  // variant: each copy was counted as a cell of its own ("8 cells, 6 already complete" for 2).
  const seen = new Set<string>()
  return specs.filter(spec => {
    const key = `${spec.model}|${spec.method}|${JSON.stringify(Object.entries(spec.params).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

export async function resolveSweepTasks(config: HarnessConfig): Promise<TaskDefinition[]> {
  return config.tasks ? resolveTasks(config.tasks) : builtInTasks()
}
