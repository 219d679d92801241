// Finds method files in methods/, validates parameters, and runs the fail-fast checks.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { fail, failIn, HarnessError, withContext } from '../errors.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { moeLayers } from '../model/modelSpec.ts'
import { loadAllPlugins, loadPlugin, pluginFiles } from '../plugins/discover.ts'
import { METHODS_DIR, ROOT } from '../paths.ts'
import { moduleFingerprint } from '../identity/sourceFingerprint.ts'
import { closest, unknownName } from '../util/suggest.ts'
import { ALL_NEEDS, type StatNeed } from '../calibration/stats.ts'
import { METHOD_FAMILIES, type CalibrationProcedure, type MethodDefinition, type MoeLayout, type ParamShape } from './defineMethod.ts'

export type ParamValues = Record<string, number | boolean | string>

export function methodNames(): string[] {
  return [...pluginFiles(METHODS_DIR).keys()]
}

export async function loadMethod(name: string): Promise<MethodDefinition> {
  if (!methodNames().includes(name)) await unknownMethod(name)
  holdCodeHash(name)
  return loadPlugin<MethodDefinition>('method', METHODS_DIR, name, 'METHOD_INVALID').then(checkShape)
}

/**
 * Each method's code hash (methodFileHash) as it was when this process first loaded the method: Node
 * imports a module once per process, so an edit afterwards (of the method or a helper it imports) does
 * not change the code that runs here. A sweep plans its variants at the start and computes their ids as
 * it prepares them, possibly hours later; read from disk then, an edit in between gave variants made by
 * the old code the new code's id, in the store and the home's index (src/variants/variantIndex.ts), and
 * a later sweep running the new code reused them. Taken just before the import.
 */
const loadedCode = new Map<string, string>()
function holdCodeHash(name: string): void {
  const file = pluginFiles(METHODS_DIR).get(name)
  if (file && !loadedCode.has(name)) loadedCode.set(name, moduleFingerprint(file, ROOT))
}

/**
 * UNKNOWN_NAME for a method name; when the name is a value of some method's enum parameter (a paper's
 * name: Wanda and MoE-Pruner are `score`s of magnitude-pruning), the message says how to ask for it,
 * on the command line and in a config, instead of only listing the file names.
 */
async function unknownMethod(name: string): Promise<never> {
  // A file the registry skips for its name (methods/varPrune.ts, my_method.ts) would otherwise be "unknown" with no hint why.
  if (fs.existsSync(path.join(METHODS_DIR, `${name}.ts`))) {
    const kebab = name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/[_\s.]+/g, '-').toLowerCase()
    fail('UNKNOWN_NAME', `${path.join(METHODS_DIR, `${name}.ts`)} is not loaded: method file names are kebab-case (lowercase letters, digits, dashes). Rename it to ${kebab}.ts, set name: '${kebab}' in it, and use --method ${kebab}.`)
  }
  const uses: string[] = []
  const methods = await loadAllMethods().catch(() => [] as MethodDefinition[]) // a broken file must not hide this error
  for (const m of methods) {
    for (const [param, spec] of Object.entries(m.params)) {
      const value = spec.type === 'enum' ? spec.values.find(v => v.toLowerCase() === name.toLowerCase()) : undefined
      if (value) uses.push(`--method ${m.name} --param ${param}=${value} (config: { method: '${m.name}', params: { ${param}: '${value}' } })`)
    }
  }
  if (uses.length) fail('UNKNOWN_NAME', `Unknown method '${name}': it is a parameter value, use ${uses.join(' or ')}. Available methods: ${methodNames().join(', ')}.`)
  return unknownName('method', name, methodNames())
}

export async function loadAllMethods(): Promise<MethodDefinition[]> {
  for (const name of methodNames()) holdCodeHash(name)
  return (await loadAllPlugins<MethodDefinition>('method', METHODS_DIR, 'METHOD_INVALID')).map(checkShape)
}

function checkShape(m: MethodDefinition): MethodDefinition {
  if (typeof m.apply !== 'function' && typeof m.applyLayer !== 'function') fail('METHOD_INVALID', `Method '${m.name}' has neither apply(ctx) nor applyLayer(ctx, layer); define one of them.`)
  if (typeof m.apply === 'function' && typeof m.applyLayer === 'function') fail('METHOD_INVALID', `Method '${m.name}' defines both apply and applyLayer; keep one (applyLayer serves both calibration procedures).`)
  if (!m.params?.ratio) fail('METHOD_INVALID', `Method '${m.name}' must declare a 'ratio' parameter (p.ratio()): it is the shared sweep axis.`)
  if (RESERVED_METHOD_NAMES.includes(m.name)) fail('METHOD_INVALID', `methods/${m.name}.ts: '${m.name}' is reserved (the leaderboard's label for the unedited model); rename the file and its name.`)
  const file = `methods/${m.name}.ts`
  if (typeof m.description !== 'string' || !m.description.trim()) fail('METHOD_INVALID', `${file}: description must be a sentence or two (shown by \`moe-harness methods\` and on the report's method page).`)
  if (!(METHOD_FAMILIES as readonly string[]).includes(m.family)) fail('METHOD_INVALID', `${file}: family ${JSON.stringify(m.family)} is not one of ${METHOD_FAMILIES.join(', ')}${hint(String(m.family), METHOD_FAMILIES)}.`)
  // A misspelt need was accepted and the method then failed in apply with "statistic 'routing' was not declared".
  for (const [key, needs] of [['needs', m.needs], ['unprunedNeeds', m.unprunedNeeds]] as const) if (Array.isArray(needs)) checkNeeds(file, key, needs)
  if (m.params.ratio.type !== 'number') fail('METHOD_INVALID', `methods/${m.name}.ts: parameter 'ratio' must be a number (p.ratio()), not ${m.params.ratio.type}.`)
  // A default outside its own bounds would be blamed on the user ("k = 50 is above its maximum 10") though nobody passed it.
  for (const [key, spec] of Object.entries(m.params)) {
    const bad = (why: string) => fail('METHOD_INVALID', `methods/${m.name}.ts: parameter '${key}' ${why}; fix its declaration in params.`)
    if (spec.type === 'enum') {
      if (!Array.isArray(spec.values) || spec.values.length === 0) bad('has no values')
      if (!spec.values.includes(spec.default)) bad(`has default ${JSON.stringify(spec.default)}, which is not one of its values (${spec.values.join(', ')})`)
    } else if (spec.type === 'boolean') {
      const d: unknown = spec.default
      if (typeof d !== 'boolean') bad(`has default ${JSON.stringify(d)}, not true or false`)
    } else if (spec.type === 'number' || spec.type === 'integer') {
      const d: unknown = spec.default
      if (typeof d !== 'number' || !Number.isFinite(d)) bad(`has default ${JSON.stringify(d)}, not a finite number`)
      if (spec.type === 'integer' && !Number.isInteger(spec.default)) bad(`is an integer but its default is ${spec.default}`)
      if (spec.min !== undefined && spec.max !== undefined && spec.min > spec.max) bad(`has min ${spec.min} above max ${spec.max}`)
      if (spec.min !== undefined && spec.default < spec.min) bad(`has default ${spec.default} below its minimum ${spec.min}`)
      if (spec.max !== undefined && spec.default > spec.max) bad(`has default ${spec.default} above its maximum ${spec.max}`)
    } else {
      bad(`has unknown type ${JSON.stringify((spec as { type?: unknown }).type)} (use p.number, p.integer, p.boolean or p.enum)`)
    }
    // tsx does not check types: a missing description was listed by `methods` as 'undefined'.
    const description: unknown = spec.description
    if (typeof description !== 'string' || !description.trim()) bad('has no description (a short phrase shown by `moe-harness methods` and on the report\'s method page)')
  }
  return m
}

const hint = (name: string, valid: readonly string[]) => {
  const near = closest(name, valid)
  return near.length ? ` (did you mean ${near.join(', ')}?)` : ''
}

/** METHOD_INVALID for a `needs` / `unprunedNeeds` entry that is not a calibration statistic. */
function checkNeeds(file: string, key: string, needs: unknown): void {
  if (!Array.isArray(needs)) fail('METHOD_INVALID', `${file}: ${key} must be an array of statistic names (e.g. ['routing']), got ${JSON.stringify(needs)}.`)
  for (const need of needs) {
    if (!(ALL_NEEDS as readonly unknown[]).includes(need)) fail('METHOD_INVALID', `${file}: ${key} lists ${JSON.stringify(need)}, which is not a calibration statistic${hint(String(need), ALL_NEEDS)}; known: ${ALL_NEEDS.join(', ')}.`)
  }
}

/** Method names the harness uses itself: the leaderboard labels the unedited model 'unpruned'. */
export const RESERVED_METHOD_NAMES: readonly string[] = ['unpruned']

/**
 * sha256 of the code the method runs: its file and every project file it imports, transitively
 * (src/identity/sourceFingerprint.ts moduleFingerprint: src/methods/helpers.ts, merging.ts, a plugin's
 * own helper files). Part of the variant key, so editing a method, or a helper it calls, never reuses
 * stale variants or results (the file's bytes alone missed a fix in removeLowestPerLayer; found by a
 * fresh-user trial). A changed variant id re-prepares the variant; cells whose edits come out the same
 * are still reused (runs are keyed by the edits' content hash).
 */
export function methodFileHash(name: string): string {
  const loaded = loadedCode.get(name) // the code this process runs, once the method is loaded
  if (loaded) return loaded
  const file = pluginFiles(METHODS_DIR).get(name)
  return file ? moduleFingerprint(file, ROOT) : 'unknown'
}

/** Parses "k=v" strings against the method's parameter specs. */
export function parseParamOverrides(method: MethodDefinition, pairs: readonly string[]): ParamValues {
  const out: ParamValues = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq <= 0) fail('INVALID_ARGUMENT', `--param '${pair}' must look like name=value (e.g. --param scope=global).`)
    const key = pair.slice(0, eq).trim()
    const raw = pair.slice(eq + 1).trim()
    const spec = method.params[key]
    if (!spec) unknownName(`parameter of method '${method.name}'`, key, Object.keys(method.params))
    // The last of two values won silently.
    if (key in out) fail('INVALID_ARGUMENT', `--param ${key} is given twice (${key}=${String(out[key])} and ${key}=${raw}); pass it once (a sweep config takes a list of values to compare).`)
    if (spec.type === 'boolean') {
      if (raw !== 'true' && raw !== 'false') fail('INVALID_ARGUMENT', `${method.name}.${key} is a boolean; use ${key}=true or ${key}=false.`)
      out[key] = raw === 'true'
    } else if (spec.type === 'enum') out[key] = raw
    else {
      // Number('') is 0 (`--param k=` ran with k = 0) and Number('abc') NaN, shown as "got null".
      const n = Number(raw)
      if (raw === '' || Number.isNaN(n)) fail('INVALID_ARGUMENT', `${method.name}.${key} must be ${spec.type === 'integer' ? 'an integer' : 'a number'}, got '${raw}' (--param ${key}=<${spec.type === 'integer' ? 'integer' : 'number'}>).`)
      out[key] = n
    }
  }
  return out
}

/** Defaults filled in, every value checked; returns the canonical parameter object (sorted keys). */
export function resolveParams(method: MethodDefinition, given: ParamValues): ParamValues {
  for (const key of Object.keys(given)) {
    if (!(key in method.params)) unknownName(`parameter of method '${method.name}'`, key, Object.keys(method.params))
  }
  const out: ParamValues = {}
  for (const key of Object.keys(method.params).sort()) {
    const spec = method.params[key]
    const v = given[key] ?? spec.default
    const where = `${method.name}.${key}`
    switch (spec.type) {
      case 'boolean':
        if (typeof v !== 'boolean') fail('INVALID_ARGUMENT', `${where} must be true or false, got ${JSON.stringify(v)}.`)
        break
      case 'enum':
        if (typeof v !== 'string' || !spec.values.includes(v)) {
          try { unknownName(`value of ${where}`, String(v), spec.values) } catch (e) { fail('INVALID_ARGUMENT', (e as Error).message) }
        }
        break
      default: {
        if (typeof v !== 'number' || !Number.isFinite(v)) fail('INVALID_ARGUMENT', `${where} must be a number, got ${JSON.stringify(v)}.`)
        if (spec.type === 'integer' && !Number.isInteger(v)) fail('INVALID_ARGUMENT', `${where} must be an integer, got ${v}.`)
        if (spec.min !== undefined && v < spec.min) fail('INVALID_ARGUMENT', `${where} = ${v} is below its minimum ${spec.min}.`)
        if (spec.max !== undefined && v > spec.max) fail('INVALID_ARGUMENT', `${where} = ${v} is above its maximum ${spec.max}${key === 'ratio' ? ' (ratio must be in [0, 1))' : ''}.`)
      }
    }
    out[key] = v
  }
  return out
}

export function layoutOf(ckpt: Checkpoint): MoeLayout {
  return { family: ckpt.spec.family, hiddenSize: ckpt.spec.hiddenSize, layers: moeLayers(ckpt.spec), names: ckpt.names }
}

export function needsOf(method: MethodDefinition, params: ParamValues): StatNeed[] {
  const needs = typeof method.needs === 'function' ? callHook(method, 'needs', () => (method.needs as (p: never) => readonly StatNeed[])(strictParams(method.name, params) as never)) : method.needs ?? []
  if (typeof method.needs === 'function') checkNeeds(`methods/${method.name}.ts`, 'needs(params)', needs)
  return [...needs]
}

/** Statistics read from one pass of the unpruned model (ctx.unpruned). */
export function unprunedNeedsOf(method: MethodDefinition, params: ParamValues): StatNeed[] {
  const needs = typeof method.unprunedNeeds === 'function' ? callHook(method, 'unprunedNeeds', () => (method.unprunedNeeds as (p: never) => readonly StatNeed[])(strictParams(method.name, params) as never)) : method.unprunedNeeds ?? []
  if (typeof method.unprunedNeeds === 'function') checkNeeds(`methods/${method.name}.ts`, 'unprunedNeeds(params)', needs)
  return [...needs]
}

/** Runs one of a plugin's small functions (needs, calibration); what it throws is METHOD_FAILED naming the method, the hook and the line (was INTERNAL with a stack trace). */
function callHook<T>(method: MethodDefinition, hook: string, fn: () => T): T {
  try {
    return fn()
  } catch (e) {
    // strictParams' error is the plugin's mistake (params.grid), located like its TypeErrors.
    if (e instanceof HarnessError && e.code === 'INVALID_ARGUMENT') failIn({ method: method.name, phase: hook }, 'METHOD_FAILED', `${e.code}: ${e.message}${pluginLocation(e, method.name)}`, e)
    if (e instanceof HarnessError) throw withContext(e, { method: method.name, phase: hook })
    return failIn({ method: method.name, phase: hook }, 'METHOD_FAILED', `${e instanceof Error ? (isCodingError(e) ? `${e.name}: ${e.message}` : e.message) : String(e)}${pluginLocation(e, method.name)}`, e)
  }
}

/** The calibration procedure of a method with these parameters ('one-pass' unless the method says otherwise). */
export function procedureOf(method: MethodDefinition, params: ParamValues): CalibrationProcedure {
  const p = typeof method.calibration === 'function' ? callHook(method, 'calibration', () => (method.calibration as (p: never) => CalibrationProcedure)(strictParams(method.name, params) as never)) : method.calibration ?? 'one-pass'
  if (p !== 'one-pass' && p !== 'sequential') fail('METHOD_INVALID', `Method '${method.name}': calibration must be 'one-pass' or 'sequential', got ${JSON.stringify(p)}.`)
  if (p === 'sequential' && typeof method.applyLayer !== 'function') fail('METHOD_INVALID', `Method '${method.name}' asks for sequential calibration but has no applyLayer(ctx, layer); sequential calibration applies the method one layer at a time.`)
  return p
}

/**
 * Where in the method's own code a thrown value came from, for error messages: ` (at methods/x.ts:12:7)`
 * from the first stack frame in a file under methods/ (the plugin or a helper file of its own; tsx maps
 * the lines to the .ts source), else ` (thrown by methods/x.ts)` naming the plugin file, or '' for a
 * method that has no file there (one built in a test). Paths are relative to the current folder when
 * inside it.
 */
export function pluginLocation(e: unknown, methodName: string): string {
  const shown = (file: string) => {
    const rel = path.relative(process.cwd(), file)
    return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file
  }
  const stack = e instanceof Error && typeof e.stack === 'string' ? e.stack : ''
  for (const m of stack.matchAll(/\(?((?:file:\/\/)?\/[^\s():]+):(\d+):(\d+)\)?/g)) {
    const file = m[1].startsWith('file://') ? fileURLToPath(m[1]) : m[1]
    if (file.startsWith(METHODS_DIR + path.sep)) return ` (at ${shown(file)}:${m[2]}:${m[3]})`
  }
  const file = pluginFiles(METHODS_DIR).get(methodName)
  return file ? ` (thrown by ${shown(file)})` : ''
}

/** A programming error in plugin code (not a "this ratio cannot work" message from validate). */
export function isCodingError(e: unknown): boolean {
  return e instanceof TypeError || e instanceof ReferenceError || e instanceof RangeError || e instanceof SyntaxError
}

/**
 * The method's parameters, frozen; reading one it does not declare throws. A misspelt `params.ratoi`
 * was undefined, so removeLowestPerLayer removed every expert and the error blamed the variant
 * ("only 0 experts would remain") instead of the name. Symbols and Object.prototype names (toJSON,
 * constructor, ...) read as usual, so spreading, JSON and inspection work.
 */
export function strictParams(method: string, params: ParamValues): Readonly<ParamValues> {
  return new Proxy(Object.freeze({ ...params }), {
    get(target, key, receiver) {
      if (typeof key === 'string' && !(key in target) && !(key in Object.prototype) && key !== 'toJSON' && key !== 'then') {
        const near = closest(key, Object.keys(target), 1)
        fail('INVALID_ARGUMENT', `params.${key}: method '${method}' has no parameter '${key}'${near.length ? ` (did you mean params.${near[0]}?)` : ''}; its parameters: ${Object.keys(target).join(', ')}`)
      }
      return Reflect.get(target, key, receiver)
    },
  })
}

/** Runs the method's own feasibility check before any calibration; errors name the method and phase. */
export function validateMethod(method: MethodDefinition, params: ParamValues, layout: MoeLayout): void {
  const where = { method: method.name, phase: 'validate' }
  if (layout.layers.length === 0) failIn(where, 'METHOD_INFEASIBLE', 'the model has no MoE layers.')
  try {
    method.validate?.(strictParams(method.name, params) as never, layout)
  } catch (e) {
    if (e instanceof HarnessError && e.code === 'METHOD_INFEASIBLE') throw withContext(e, where)
    // A mistake (params.ratoi), not a setting that cannot work: a sweep would skip the cell as infeasible.
    if (e instanceof HarnessError) failIn(where, 'METHOD_FAILED', `${e.code}: ${e.message}${pluginLocation(e, method.name)}`, e)
    // validate's Errors say why a setting cannot work; a TypeError there is a bug in the plugin, located.
    if (isCodingError(e)) failIn(where, 'METHOD_FAILED', `${(e as Error).name}: ${(e as Error).message}${pluginLocation(e, method.name)}`, e)
    failIn(where, 'METHOD_INFEASIBLE', e instanceof Error ? e.message : `${String(e)}${pluginLocation(e, method.name)}`, e)
  }
}

export type { ParamShape }
