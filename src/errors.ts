/**
 * Every error the harness raises on purpose is a HarnessError with a stable `code` and a message that
 * says what is wrong and how to fix it. The CLI prints `error [CODE]: message` and exits non-zero.
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
  | 'INTERRUPTED'
  | 'SLURM_UNAVAILABLE'
  | 'SLURM_REFUSED'

export class HarnessError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'HarnessError'
    this.code = code
  }
}

export function fail(code: ErrorCode, message: string, cause?: unknown): never {
  throw new HarnessError(code, message, cause === undefined ? undefined : { cause })
}

export function isHarnessError(e: unknown): e is HarnessError {
  return e instanceof HarnessError
}
