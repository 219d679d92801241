// File-system errors at the harness's boundaries, turned into HarnessErrors that name the path and
// the fix instead of a raw ENOENT/EACCES stack trace.
import fs from 'node:fs'
import { fail, HarnessError, type ErrorCode } from '../errors.ts'

/**
 * Maps a Node fs error (ENOENT, EACCES, EPERM, EISDIR, ENOTDIR, EROFS, ENOSPC, ELOOP, ...) raised
 * while doing `what` ("read the task data", "write the database") on `file` to a HarnessError with
 * `code`. A HarnessError passes through unchanged; anything else becomes `code` with its message.
 */
export function fileError(e: unknown, file: string, what: string, code: ErrorCode = 'FILE_ACCESS'): HarnessError {
  if (e instanceof HarnessError) return e
  const errno = (e as NodeJS.ErrnoException)?.code
  const reason = (() => {
    switch (errno) {
      case 'ENOENT': return `${file} does not exist; check the path`
      case 'EACCES': case 'EPERM': return `permission denied on ${file}; check its permissions (and those of its folders) or use another path`
      case 'EISDIR': return `${file} is a folder where a file is expected; pass the path of a file`
      case 'ENOTDIR': return `a part of ${file} is a file where a folder is expected; fix the path`
      case 'EROFS': return `${file} is on a read-only file system; use a path on a writable one`
      case 'ENOSPC': return `the disk holding ${file} is full; free some space`
      case 'EFBIG': return `${file} would pass the largest file allowed (the process's file-size limit, ulimit -f, or the file system's); raise the limit or use another disk`
      case 'ELOOP': return `${file} is a symbolic-link loop; fix the link`
      case 'ENAMETOOLONG': return `the path ${file} is too long`
      case 'EMFILE': case 'ENFILE': return `too many open files while opening ${file}; raise the limit (ulimit -n)`
      default: return `${file}: ${(e as Error)?.message ?? String(e)}`
    }
  })()
  return new HarnessError(code, `Cannot ${what}: ${reason}.`, { cause: e })
}

/** Runs a file-system operation and maps its error with fileError. */
export function withFileErrors<T>(file: string, what: string, fn: () => T, code: ErrorCode = 'FILE_ACCESS'): T {
  try {
    return fn()
  } catch (e) {
    throw fileError(e, file, what, code)
  }
}

/** Reads a whole file that must be a regular file (not a folder, FIFO or device); errors name the path. */
export function readRegularFile(file: string, what: string, code: ErrorCode = 'FILE_ACCESS'): Buffer {
  return withFileErrors(file, what, () => {
    const st = fs.statSync(file)
    if (st.isDirectory()) fail(code, `Cannot ${what}: ${file} is a folder where a file is expected; pass the path of a file.`)
    if (!st.isFile()) fail(code, `Cannot ${what}: ${file} is not a regular file (a device, socket or pipe); pass the path of a file.`)
    return fs.readFileSync(file)
  }, code)
}
