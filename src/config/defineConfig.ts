// harness.config.ts: what a sweep evaluates. Validated with zod; CLI flags override it.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { createJiti } from 'jiti'
import { z } from 'zod'
import { DEFAULTS, harnessHome } from '../defaults.ts'
import { fail } from '../errors.ts'
import { ROOT } from '../paths.ts'
import { closest } from '../util/suggest.ts'
import { unexpandedHomePath } from '../util/homePath.ts'
import { k8sMemoryProblem, parseK8sMemory } from '../util/k8sQuantity.ts'

const paramValue = z.union([z.number(), z.boolean(), z.string()])

const methodEntry = z.union([
  z.string(),
  z.object({
    /** The method file name (methods/<method>.ts). */
    method: z.string(),
    /** Fixed values, or lists of values to sweep (the grid is their cartesian product). */
    params: z.record(z.string(), z.union([paramValue, z.array(paramValue).min(1)])).optional(),
  }).strict(),
  // zod's own message for a failed union is "Invalid input".
], { error: "each entry is a method name ('reap') or { method: 'reap', params: { name: value or [values to sweep] } }" })

export const configSchema = z.object({
  /** Model name → local HuggingFace-format folder (relative to the config file). */
  models: z.record(z.string(), z.string()).refine(m => Object.keys(m).length > 0, 'declare at least one model'),
  /** Methods and their parameter grids; omitted = every method in methods/ with its defaults. */
  methods: z.array(methodEntry).min(1, 'list at least one method, or leave methods out for every method in methods/ (an empty list sweeps nothing)').optional(),
  /** The shared sweep axis; 0 is the unpruned baseline. */
  ratios: z.array(z.number().min(0).lt(1)).min(1).default([0, 0.25, 0.5, 0.75]),
  /** Task names (tasks/<name>.ts); omitted = the built-in tasks. */
  tasks: z.array(z.string()).min(1, 'list at least one task, or leave tasks out for the built-in tasks (an empty list sweeps nothing)').optional(),
  /** The same document subset for every method: the first `limit`, or a seeded stratified `sample`. */
  subset: z.object({ limit: z.number().positive().optional(), sample: z.number().int().positive().optional(), seed: z.number().int().default(DEFAULTS.sampleSeed) })
    .strict().refine(s => !(s.limit !== undefined && s.sample !== undefined), 'use either limit or sample').default({ seed: DEFAULTS.sampleSeed }),
  /** Calibration text and size; defaults (src/defaults.ts): the built-in validation text, 128 sequences of min(2048, context) tokens, seed 42. A file source is relative to the config file. */
  calibration: z.object({
    source: z.string().default(DEFAULTS.calibration.source), field: z.string().optional(), sequences: z.number().int().positive().optional(),
    length: z.number().int().min(2).optional(), seed: z.number().int().default(DEFAULTS.calibration.seed),
  }).strict().default({ source: DEFAULTS.calibration.source, seed: DEFAULTS.calibration.seed }),
  /** Worker pool: workers × intra-op threads should not exceed the cores; threads default to the cores / workers (src/defaults.ts). */
  pool: z.object({ workers: z.number().int().positive().default(DEFAULTS.workers), threads: z.number().int().positive().optional() }).strict().default({ workers: DEFAULTS.workers }),
  device: z.enum(['cpu', 'cuda', 'webgpu']).default('cpu'),
  /**
   * Score checkpoints whose weights hold NaN/Inf instead of refusing them (TENSOR_NONFINITE): `true`
   * for every model, or a list of model names (keys of `models`). `sweep --allow-nonfinite` sets it to true.
   */
  allowNonfinite: z.union([z.boolean(), z.array(z.string())]).default(false),
  /** Padded tokens per batch (scores do not depend on it). */
  batchTokens: z.number().int().positive().default(DEFAULTS.batchTokens),
  /** Folder with local copies of the standard datasets. */
  dataDir: z.string().optional(),
  /**
   * The SQLite results store, relative to the config file like every path here; omitted = results.sqlite
   * in the harness home (./.harness, or $MOE_HARNESS_HOME). `--db` (relative to the current folder) overrides it. See storeFile.
   */
  store: z.string().optional(),
  report: z.object({ outDir: z.string().default('reports/site'), title: z.string().default('MoE sparsification leaderboard') }).strict().default({ outDir: 'reports/site', title: 'MoE sparsification leaderboard' }),
  /** Defaults for `sweep --slurm` / `--k8s-manifest` (CLI flags override them); see README "Running on a cluster". */
  cluster: z.object({
    partition: z.string().optional(), account: z.string().optional(),
    /** Slurm time limit per array task, e.g. '02:00:00'. */
    time: z.string().optional(),
    gpusPerTask: z.number().int().min(0).optional(), cpusPerTask: z.number().int().positive().optional(),
    /** Number of shards = array tasks (capped at the number of cells). */
    arraySize: z.number().int().positive().default(4),
    /** Extra `#SBATCH` lines, e.g. ['--mem=32G', '--qos=normal']. */
    sbatch: z.array(z.string()).default([]),
    /** Kubernetes: container image with Node 20 and the project, and the volume claim holding it. */
    image: z.string().default('node:20-bookworm'), pvc: z.string().default('moe-harness'),
    /** Kubernetes: memory request and limit of each pod, a quantity such as '32Gi'; omitted = what one worker needs. Slurm: use sbatch: ['--mem=32G']. */
    memory: z.string().trim().refine(v => parseK8sMemory(v) !== undefined, { error: iss => k8sMemoryProblem(String(iss.input)) }).optional(),
  }).strict().default({ arraySize: 4, sbatch: [], image: 'node:20-bookworm', pvc: 'moe-harness' }),
}).strict()

export type HarnessConfigInput = z.input<typeof configSchema>
export type HarnessConfig = z.output<typeof configSchema>

/** Identity helper that gives harness.config.ts editor types. */
export function defineConfig(config: HarnessConfigInput): HarnessConfigInput {
  return config
}

export interface LoadedConfig {
  config: HarnessConfig
  file: string | null
  /** Folder relative paths in the config resolve against. */
  baseDir: string
}

/** Validates a config object; errors name every offending path. */
export function parseConfig(raw: unknown, where: string): HarnessConfig {
  const result = configSchema.safeParse(raw)
  if (!result.success) {
    const issues = result.error.issues.map(i => `${i.path.join('.') || '(root)'}: ${i.message}${keyHint(i)}`).join('; ')
    fail('HARNESS_CONFIG_INVALID', `${where} is invalid: ${issues}.`)
  }
  const allowed = result.data.allowNonfinite
  if (Array.isArray(allowed)) {
    const unknown = allowed.filter(m => !(m in result.data.models))
    const near = [...new Set(unknown.flatMap(m => closest(m, Object.keys(result.data.models), 1)))]
    if (unknown.length) fail('HARNESS_CONFIG_INVALID', `${where} is invalid: allowNonfinite names ${unknown.map(m => `'${m}'`).join(', ')}, not a key of models (${Object.keys(result.data.models).join(', ')})${near.length ? ` (did you mean ${near.join(', ')}?)` : ''}.`)
  }
  refuseTildePaths(result.data, where)
  return result.data
}

/**
 * HARNESS_CONFIG_INVALID for a path field that begins with '~' (a shell's home, which nothing expands
 * in a config): `store: '~/results.sqlite'` made a folder named '~' in the config's folder, whose
 * cleanup (`rm -rf ~`) deletes the user's home.
 */
function refuseTildePaths(config: HarnessConfig, where: string): void {
  const fields: [string, string | undefined][] = [
    ...Object.entries(config.models).map(([name, dir]) => [`models.${name}`, dir] as [string, string]),
    ['dataDir', config.dataDir], ['store', config.store], ['report.outDir', config.report.outDir], ['calibration.source', config.calibration.source],
  ]
  for (const [field, value] of fields) {
    const meant = unexpandedHomePath(value)
    if (meant === undefined) continue
    fail('HARNESS_CONFIG_INVALID', `${where} is invalid: ${field} is ${JSON.stringify(value)}, but a config's paths are not expanded by a shell, so it would be a folder named '~' in ${path.dirname(path.resolve(where))}; `
      + `write the path out (${meant}, or os.homedir() in the config).`)
  }
}

/**
 * ` (did you mean ratios?)` for an unrecognized key with a close valid key at the same place in the
 * schema (zod names only the unknown key: `ratio: [...]` said `Unrecognized key: "ratio"`).
 */
function keyHint(issue: z.core.$ZodIssue): string {
  if (issue.code !== 'unrecognized_keys') return ''
  const valid = objectKeysAt(configSchema, issue.path)
  const near = [...new Set(issue.keys.flatMap(k => closest(k, valid, 1)))]
  return near.length ? ` (did you mean ${near.join(', ')}?)` : ''
}

/** The keys of the object schema found at `at` (through defaults, optionals, arrays, records and unions); [] when none. */
function objectKeysAt(schema: z.ZodType, at: readonly PropertyKey[]): string[] {
  const unwrap = (s: z.ZodType | undefined): z.ZodType | undefined => {
    while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType
    if (s instanceof z.ZodUnion) return (s.options as z.ZodType[]).map(unwrap).find(o => o instanceof z.ZodObject)
    return s
  }
  let s = unwrap(schema)
  for (const step of at) {
    if (s instanceof z.ZodObject) s = unwrap(s.shape[String(step)] as z.ZodType | undefined)
    else if (s instanceof z.ZodArray) s = unwrap(s.element as z.ZodType)
    else if (s instanceof z.ZodRecord) s = unwrap(s.valueType as z.ZodType)
    else return []
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape) : []
}

/** Whether the config lets `model` (a key of models) be scored with non-finite weights. */
export function allowsNonfinite(config: Pick<HarnessConfig, 'allowNonfinite'>, model: string): boolean {
  return config.allowNonfinite === true || (Array.isArray(config.allowNonfinite) && config.allowNonfinite.includes(model))
}

/**
 * The results store a command uses: `--db` as given (relative to the current folder), else the config's
 * `store` relative to the config's folder (as models, dataDir and report.outDir are: resolving it
 * against the current folder gave `sweep --slurm --config exp/harness.config.ts` run from two folders
 * two stores, and the second submission re-ran every cell), else `<harness home>/results.sqlite`, the
 * default store README and `moe-harness cache` name (it had been ./.harness/results.sqlite whatever
 * $MOE_HARNESS_HOME said). Absolute path.
 */
export function storeFile(loaded: Pick<LoadedConfig, 'config' | 'baseDir'>, db?: string): string {
  if (db !== undefined) return storePath('--db', db, process.cwd())
  if (loaded.config.store !== undefined) return storePath('store in the config', loaded.config.store, loaded.baseDir)
  return path.join(harnessHome(), 'results.sqlite')
}

/** Whether storeFile's path is the config's `store` (no --db): written down on purpose, so its missing folder is made (ResultsStore createFolder). */
export function storeIsConfigs(loaded: Pick<LoadedConfig, 'config'>, db?: string): boolean {
  return db === undefined && loaded.config.store !== undefined
}

/**
 * A store path given by the user, resolved against `base`. An empty one was ignored (`--db "$DB"` with
 * DB unset wrote to the config's store); one ending in a slash names a folder, and path.resolve dropped
 * the slash, so `--db results/` created a database file named `results`. Errors: STORE_FAILED.
 */
function storePath(what: string, value: string, base: string): string {
  if (!value.trim()) fail('STORE_FAILED', `${what} is empty; give the results database's file path (e.g. results.sqlite)${what === '--db' ? ', or leave --db out to use the config\'s store' : ''}.`)
  if (/[\\/]$/.test(value)) fail('STORE_FAILED', `${what} ${value} ends with a slash, so it names a folder, not a database file; pass a file path such as ${path.join(value, 'results.sqlite')}.`)
  return path.resolve(base, value)
}

/**
 * A warning when a store exists where this command would have put its results before storeFile's rule
 * (2026-11-30: a config's `store`, or `.harness/results.sqlite` when it had none, relative to the
 * current folder) and the command now uses another file: that store's results are not read (every cell
 * would be scored again into the new one), so the user is told which file holds them and how to keep
 * using it. undefined with --db (the user's choice) or when the two are the same file.
 */
export function formerStoreWarning(loaded: Pick<LoadedConfig, 'config' | 'baseDir'>, db?: string): string | undefined {
  if (db) return undefined
  const used = storeFile(loaded)
  const former = path.resolve(loaded.config.store ?? path.join('.harness', 'results.sqlite'))
  if (former === used || !fs.existsSync(former)) return undefined
  const keep = path.relative(loaded.baseDir, former) || former
  return `the results store is now ${used} (${loaded.config.store ? "the config's store, relative to the config's folder" : 'the default: results.sqlite in the harness home'}), ` +
    `but ${former} (where this command kept results before) exists and is not read: to keep using it, pass --db ${former} or set store: ${JSON.stringify(keep)} in the config; ` +
    `or move it to ${used}${fs.existsSync(used) ? ' (merge the two with `moe-harness merge`)' : ''}.`
}

export async function loadConfig(file?: string): Promise<LoadedConfig> {
  const candidate = path.resolve(file ?? 'harness.config.ts')
  if (!fs.existsSync(candidate)) {
    if (file) fail('HARNESS_CONFIG_INVALID', `Config file ${file} does not exist.`)
    fail('HARNESS_CONFIG_INVALID', `No harness.config.ts in ${process.cwd()}; pass --config FILE (see the README for the fields).`)
  }
  let mod: unknown
  try {
    // jiti loads a TypeScript config from any folder, whatever its package.json says about modules.
    mod = await createJiti(import.meta.url, { moduleCache: false }).import(pathToFileURL(candidate).href)
  } catch (e) {
    const message = (e as Error).message
    // The project is no npm package: a config outside it that imports 'moe-harness' cannot resolve it.
    const hint = /Cannot find (module|package) 'moe-harness/.test(message)
      ? ` (the harness is not an installed package: import defineConfig from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}, or default-export a plain object)`
      : ''
    fail('HARNESS_CONFIG_INVALID', `${candidate} failed to load: ${message}${hint}`)
  }
  // Without a default export the module's other exports were validated as the config ("models: expected record, received undefined").
  // `in`, not `.default`: jiti's interop answers `.default` with the whole module when there is none.
  const exports = mod && typeof mod === 'object' ? (mod as Record<string, unknown>) : {}
  if (!('default' in exports) || exports.default === undefined) {
    const named = Object.keys(exports).filter(k => k !== 'default')
    fail('HARNESS_CONFIG_INVALID', `${candidate} has no default export: the config must be \`export default defineConfig({ ... })\`${named.length ? ` (the file exports ${named.map(n => `'${n}'`).join(', ')}: make the config its default export)` : ''}.`)
  }
  return { config: parseConfig(exports.default, candidate), file: candidate, baseDir: path.dirname(candidate) }
}
