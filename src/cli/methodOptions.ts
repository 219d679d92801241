// --method / --ratio / --param and the calibration flags, shared by eval, transform and score.
import type { Command } from 'commander'
import { checkCalibrationLength } from '../config/calibrationLength.ts'
import { DEFAULTS } from '../defaults.ts'
import { fail } from '../errors.ts'
import { defaultCalibration, type CalibrationSpec } from '../calibration/source.ts'
import type { Checkpoint } from '../model/checkpoint.ts'
import { loadMethod, parseParamOverrides } from '../methods/registry.ts'
import type { Device } from '../ort/ort.ts'
import { planVariant, prepareVariant, type PreparedVariant } from '../variants/prepare.ts'
import { createProgress } from './progress.ts'

export interface MethodFlags {
  method?: string
  ratio?: string
  param: string[]
  calibration?: string
  calibrationField?: string
  calibrationSequences?: string
  calibrationLength?: string
  calibrationSeed?: string
  /** eval's --data-dir: where a task:<name> calibration source is read. */
  dataDir?: string
}

const collect = (value: string, previous: string[]) => [...previous, value]

export function addMethodOptions(cmd: Command): Command {
  return cmd
    .option('--method <name>', 'sparsification method (a file in methods/; see `moe-harness methods`)')
    .option('--ratio <r>', "the method's ratio in [0, 1) (default: the method's default)")
    .option('--param <k=v>', 'a method parameter, repeatable (e.g. --param scope=global)', collect, [])
    .option('--calibration <source>', "calibration text: 'builtin' (held-out validation text), task:<name>, or a .txt/.jsonl/.parquet file", DEFAULTS.calibration.source)
    .option('--calibration-field <name>', 'jsonl/parquet field with the text', DEFAULTS.calibration.field)
    .option('--calibration-sequences <n>', `calibration sequences (default ${DEFAULTS.calibration.sequences}, as NAEE and Wanda)`)
    .option('--calibration-length <n>', `tokens per calibration sequence (default min(${DEFAULTS.calibration.maxLength}, the model's context))`)
    .option('--calibration-seed <n>', 'seed of the calibration sample', String(DEFAULTS.calibration.seed))
}

function intFlag(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) fail('INVALID_ARGUMENT', `${name} must be a positive integer, got '${v}'.`)
  return n
}

/**
 * A seed: any integer, as the config's seeds are (--seed x became NaN, stored as subset
 * sample:5:seedNaN; --calibration-seed x keyed the calibration cache by null).
 */
export function integerFlag(name: string, v: string): number {
  const n = Number(v)
  if (v.trim() === '' || !Number.isSafeInteger(n)) fail('INVALID_ARGUMENT', `${name} must be an integer, got '${v}'.`)
  return n
}

export function calibrationFromFlags(flags: MethodFlags, ckpt: Checkpoint): CalibrationSpec {
  const d = defaultCalibration(ckpt.spec.maxPositions)
  return {
    source: flags.calibration ?? d.source,
    field: flags.calibrationField,
    sequences: intFlag('--calibration-sequences', flags.calibrationSequences, d.sequences),
    length: intFlag('--calibration-length', flags.calibrationLength, d.length),
    seed: flags.calibrationSeed === undefined ? d.seed : integerFlag('--calibration-seed', flags.calibrationSeed),
    // task:<name> reads the data folder the command's tasks read (it ignored --data-dir).
    ...(flags.dataDir ? { dataDir: flags.dataDir } : {}),
  }
}

/** Plans (fail-fast checks) the variant a command asked for; undefined when no --method was given. */
export async function planFromFlags(flags: MethodFlags, ckpt: Checkpoint) {
  if (!flags.method) {
    if (flags.ratio !== undefined || flags.param.length) fail('INVALID_ARGUMENT', '--ratio and --param need --method.')
    return undefined
  }
  const method = await loadMethod(flags.method)
  const given = parseParamOverrides(method, flags.param)
  if (flags.ratio !== undefined) {
    const r = Number(flags.ratio)
    if (!Number.isFinite(r)) fail('INVALID_ARGUMENT', `--ratio must be a number in [0, 1), got '${flags.ratio}'.`)
    // --ratio replaced --param ratio=... silently.
    if (given.ratio !== undefined && given.ratio !== r) fail('INVALID_ARGUMENT', `--ratio ${flags.ratio} and --param ratio=${given.ratio} disagree; pass the ratio once (--ratio).`)
    given.ratio = r
  }
  return planVariant(ckpt, method.name, given)
}

export async function prepareFromPlan(ckpt: Checkpoint, plan: Awaited<ReturnType<typeof planFromFlags>>, flags: MethodFlags, engine: { device: Device; threads: number }): Promise<PreparedVariant | undefined> {
  if (!plan) return undefined
  const calibration = calibrationFromFlags(flags, ckpt)
  if (plan.needs.length) checkCalibrationLength(calibration.length, ckpt.spec.maxPositions, ckpt.dir, { flag: '--calibration-length' })
  let progress: ReturnType<typeof createProgress> | undefined
  let prepared: PreparedVariant
  try {
    prepared = await prepareVariant(ckpt, plan, {
      calibration, ...engine,
      onCalibration: (done, total, what) => { (progress ??= createProgress('calibration'.padEnd(22), total, { unit: what?.unit })).update(done, what?.detail) },
    })
  } finally {
    progress?.stop()
  }
  printMethodWarnings(prepared.method, prepared.warnings)
  return prepared
}

/** Warnings printed one per line before the rest are counted (a method warns per expert: thousands at 48 layers x 128 experts). */
export const SHOWN_WARNINGS = 10

/** A method's warnings on stderr: the first SHOWN_WARNINGS, then how many more and where all of them are. */
export function printMethodWarnings(method: string, warnings: readonly string[]): void {
  for (const w of warnings.slice(0, SHOWN_WARNINGS)) process.stderr.write(`warning [method ${method}]: ${w}\n`)
  const more = warnings.length - SHOWN_WARNINGS
  if (more > 0) process.stderr.write(`warning [method ${method}]: ... and ${more} more warning${more === 1 ? '' : 's'} (${warnings.length} in all: --json lists every one under "warnings")\n`)
}
