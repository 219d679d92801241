/**
 * Every error the harness raises on purpose is a HarnessError with a stable `code` and a message that
 * says what is wrong and how to fix it, plus where it happened when known: the method, the phase
 * (`validate`, `apply`, `applyLayer 3`, `prepare`, `score`, ...) and the task. The CLI prints
 * `error [CODE] (method naee, phase apply): message` (just `error [CODE]: message` without context)
 * and exits non-zero. Errors cross the worker boundary and enter the store as HarnessErrorData
 * (structured clone keeps plain data, not classes): `toData()` there, `HarnessError.fromData()` back.
 */
export type ErrorCode =
  | 'CHECKPOINT_NOT_FOUND'
  | 'CONFIG_INVALID'
  | 'CONFIG_UNSUPPORTED'
  | 'UNKNOWN_ARCHITECTURE'
  | 'SAFETENSORS_INVALID'
  | 'TENSOR_MISSING'
  | 'TENSOR_SHAPE'
  | 'TENSOR_DTYPE'
  | 'TENSOR_LAYOUT'
  | 'TENSOR_UNUSED'
  | 'TENSOR_NONFINITE'
  | 'TOKENIZER_INVALID'
  | 'TOKEN_OUT_OF_RANGE'
  | 'SEQUENCE_TOO_LONG'
  | 'INVALID_ARGUMENT'
  | 'HOOK_INVALID'
  | 'DEVICE_UNAVAILABLE'
  | 'SESSION_FAILED'
  /** The kernel's per-process mapping limit (vm.max_map_count) cannot hold the sessions a pool needs. */
  | 'MAP_LIMIT'
  | 'FEED_INVALID'
  | 'NUMERIC_FAILURE'
  | 'UNKNOWN_NAME'
  | 'TASK_DATA_MISSING'
  | 'TASK_INVALID'
  | 'METHOD_INVALID'
  | 'METHOD_FAILED'
  | 'METHOD_INFEASIBLE'
  | 'CALIBRATION_FAILED'
  | 'VARIANT_INVALID'
  | 'STORE_FAILED'
  | 'STORE_CORRUPT'
  | 'STORE_READONLY'
  | 'STORE_LOCKED'
  | 'STORE_NOT_HARNESS'
  | 'FILE_ACCESS'
  | 'HARNESS_CONFIG_INVALID'
  | 'REPORT_FAILED'
  | 'OUTPUT_UNSAFE'
  | 'OUTPUT_FAILED'
  | 'SLURM_UNAVAILABLE'
  | 'SLURM_REFUSED'
  /** Not raised on purpose: an unexpected exception, recorded as data (a failed sweep cell). */
  | 'INTERNAL'

/**
 * The codes that name a limit of this machine or process, whatever the variant: MAP_LIMIT (the kernel's
 * vm.max_map_count, src/util/memoryMaps.ts). Not FILE_ACCESS: that code also names a method's or a
 * task's own file. Not DEVICE_UNAVAILABLE: a sweep checks its device before anything runs
 * (ort.ts checkDeviceAvailable), and a session that then fails on CUDA (ort.ts names every such failure
 * so) is most likely the variant's, e.g. out of GPU memory for its edited weights: stopping would leave
 * every later cell unscored, run after run. Stored as a failed run or variant, a machine's failure
 * showed on the leaderboard as the method's, and every later cell failed the same way (minutes each at
 * real size): a sweep stores nothing for it and stops as an interrupt does (src/sweep/cell.ts,
 * variantSlots.ts, runSweep.ts), and a method keeps its code.
 */
const MACHINE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['MAP_LIMIT'])

/** Whether `error` is this machine's failure (MACHINE_CODES), not the cell's or the variant's. */
export function isMachineFailure(error: { code: ErrorCode }): boolean {
  return MACHINE_CODES.has(error.code)
}

/** Where an error happened. Inner code knows best: context added later never replaces a field already set. */
export interface ErrorContext {
  /** Method name, e.g. 'naee'. */
  method?: string
  /** Step of the method or of the harness: 'validate', 'apply', 'applyLayer 3', 'prepare', 'score'. */
  phase?: string
  /** Task name, e.g. 'arc_easy'. */
  task?: string
}

/** A HarnessError as plain, structured-clone-safe data: how it crosses the worker boundary and is stored with a failed cell. */
export interface HarnessErrorData extends ErrorContext {
  code: ErrorCode
  message: string
}

const CONTEXT_KEYS = ['method', 'phase', 'task'] as const

export class HarnessError extends Error {
  readonly code: ErrorCode
  method?: string
  phase?: string
  task?: string
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown } & ErrorContext) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'HarnessError'
    this.code = code
    if (options) for (const k of CONTEXT_KEYS) if (options[k] !== undefined) this[k] = options[k]
  }

  /** The code, message and context as plain data (no cause, no stack). */
  toData(): HarnessErrorData {
    const d: HarnessErrorData = { code: this.code, message: this.message }
    for (const k of CONTEXT_KEYS) if (this[k] !== undefined) d[k] = this[k]
    return d
  }

  /** Rebuilds an error from `toData()` output (e.g. in the main thread, from a worker's reply). */
  static fromData(d: HarnessErrorData): HarnessError {
    return new HarnessError(d.code, d.message, d)
  }
}

export function fail(code: ErrorCode, message: string, cause?: unknown): never {
  throw new HarnessError(code, message, cause === undefined ? undefined : { cause })
}

/** fail() with the method / phase / task the error belongs to. */
export function failIn(context: ErrorContext, code: ErrorCode, message: string, cause?: unknown): never {
  throw new HarnessError(code, message, { ...context, ...(cause === undefined ? {} : { cause }) })
}

export function isHarnessError(e: unknown): e is HarnessError {
  return e instanceof HarnessError
}

/**
 * Fills the context fields a HarnessError does not have yet and returns it (the same object, so
 * `throw withContext(e, ...)` keeps its stack and cause). Any other error is returned unchanged: an
 * unexpected exception stays an internal error with its stack, not a guessed code.
 */
export function withContext<E>(e: E, context: ErrorContext): E {
  if (e instanceof HarnessError) for (const k of CONTEXT_KEYS) if (e[k] === undefined && context[k] !== undefined) e[k] = context[k]
  return e
}

/**
 * Any thrown value as HarnessErrorData: a HarnessError as it is, anything else under `fallback` with
 * its message (prefixed by `prefix`) and the given context.
 */
export function errorData(e: unknown, fallback: ErrorCode, context: ErrorContext = {}, prefix = ''): HarnessErrorData {
  if (e instanceof HarnessError) return withContext(e, context).toData()
  const message = e instanceof Error ? e.message : String(e)
  return new HarnessError(fallback, prefix + message, context).toData()
}

/** ` (method naee, phase apply, task arc_easy)`, or '' when the error carries no context. */
export function formatContext(e: ErrorContext): string {
  const parts = CONTEXT_KEYS.filter(k => e[k] !== undefined).map(k => `${k} ${e[k]}`)
  return parts.length ? ` (${parts.join(', ')})` : ''
}

/** `CODE (method naee, phase apply): message`: one line for logs, sweep summaries and the store's error column. */
export function formatError(e: HarnessErrorData): string {
  return `${e.code}${formatContext(e)}: ${e.message}`
}

/** Whether `v` has the shape of HarnessErrorData (a worker reply, a stored error_json). */
export function isHarnessErrorData(v: unknown): v is HarnessErrorData {
  if (!v || typeof v !== 'object') return false
  const d = v as Record<string, unknown>
  return typeof d.code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(d.code) && typeof d.message === 'string' &&
    CONTEXT_KEYS.every(k => d[k] === undefined || typeof d[k] === 'string')
}
