// Why a cache folder could not be created or written, in words. Node reports the errno of the path it
// was asked for: a home that is a symbolic link to an unmounted disk made a warning say only
// "(ENOENT)" about a folder the user never typed, hiding the link that is the real cause.
import fs from 'node:fs'
import path from 'node:path'

/**
 * The reason, in words naming the path at fault, that creating or writing a file in `dir` failed with
 * `e` (a Node fs error; its errno code is appended). `dir` is the folder the file was to go in;
 * `existed`: whether creating it (mkdir -p) had succeeded before the failure. Looks at the file system
 * again (lstat of `dir` and its parents) to find the part that is a file or a dangling symbolic link.
 * Never throws.
 */
export function unwritableReason(dir: string, e: unknown, existed: boolean): string {
  const code = (e as NodeJS.ErrnoException)?.code
  const words = (() => {
    try {
      return describe(path.resolve(dir), code, existed)
    } catch {
      return undefined
    }
  })() ?? (e as Error)?.message ?? String(e)
  return code ? `${words} (${code})` : words
}

function describe(dir: string, code: string | undefined, existed: boolean): string | undefined {
  switch (code) {
    case 'ENOENT': case 'ENOTDIR': case 'EEXIST': {
      const blocker = firstBlocker(dir)
      if (blocker) return blocker
      if (code !== 'ENOENT') return undefined
      return existed ? `${dir} was removed while the file was being written (another process removing the cache?)` : `${nearestExisting(dir)} does not let folders be created in it`
    }
    case 'EACCES': case 'EPERM': return unenterable(dir) ?? `permission denied: ${nearestExisting(dir)} does not let this user create or change files there`
    case 'EROFS': return `${nearestExisting(dir)} is on a read-only file system`
    case 'ENOSPC': return `no space left on the disk holding ${nearestExisting(dir)}`
    case 'EDQUOT': return `the disk quota of this user is used up on the disk holding ${nearestExisting(dir)}`
    case 'EFBIG': return `the file would pass the largest file allowed in ${dir} (the process's file-size limit, ulimit -f, or the file system's)`
    case 'ENAMETOOLONG': return `the path ${dir} is too long`
    case 'ELOOP': return `a part of ${dir} is a symbolic-link loop`
    default: return undefined
  }
}

/** The first part of `dir`, from the root down, that is not a folder: a file, or a link to nothing. */
function firstBlocker(dir: string): string | undefined {
  const parts = dir.split(path.sep).filter(Boolean)
  let at = path.parse(dir).root
  for (const part of parts) {
    at = path.join(at, part)
    const st = fs.lstatSync(at, { throwIfNoEntry: false })
    if (!st) return undefined // missing from here down: creatable in principle, so not the cause
    if (st.isDirectory()) continue
    if (st.isSymbolicLink()) {
      const target = fs.readlinkSync(at)
      const resolved = fs.statSync(at, { throwIfNoEntry: false })
      if (!resolved) return `${at} is a symbolic link to ${target}, which does not exist (a disk that is not mounted, or a folder since removed?)`
      if (resolved.isDirectory()) continue
      return `${at} is a symbolic link to ${target}, which is a file, not a folder`
    }
    return `${at} is a file, not a folder`
  }
  return undefined
}

/**
 * The folder on the way to `dir` that this user cannot enter (no search permission), in words, or
 * undefined. Through a symbolic link the folder is looked for on the link's target: a home linked into
 * a folder the user cannot enter was blamed on the writable folder holding the link.
 */
function unenterable(dir: string, depth = 0): string | undefined {
  const parts = dir.split(path.sep).filter(Boolean)
  let at = path.parse(dir).root
  for (const part of parts) {
    const parent = at
    at = path.join(at, part)
    let link: fs.Stats | undefined
    try {
      link = fs.lstatSync(at, { throwIfNoEntry: false })
    } catch {
      return `permission denied: this user cannot enter ${parent}`
    }
    if (!link) return undefined
    if (link.isSymbolicLink()) {
      // Against the real folder holding the link: '..' in a relative target climbs from there, not
      // from the path it was reached by (through another link).
      let base = parent
      try { base = fs.realpathSync(parent) } catch { /* reached above: it exists */ }
      const target = path.resolve(base, fs.readlinkSync(at))
      const beyond = depth < 8 ? unenterable(target, depth + 1) : undefined
      if (beyond) return `${at} is a symbolic link to ${target}, which this user cannot reach: ${beyond}`
      continue
    }
    if (!link.isDirectory()) return undefined
    try {
      fs.accessSync(at, fs.constants.X_OK)
    } catch {
      return `permission denied: this user cannot enter ${at}`
    }
  }
  return undefined
}

/** `dir` or its nearest parent that exists (the one whose permissions or file system decide); a link that cannot be followed counts as existing. */
function nearestExisting(dir: string): string {
  let at = dir
  while (!lstatOrUndefined(at) && path.dirname(at) !== at) at = path.dirname(at)
  return at
}

function lstatOrUndefined(at: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(at, { throwIfNoEntry: false })
  } catch {
    return undefined
  }
}
