// The clock of a cache file's last use, one rule for every cache area (variant edits, calibration
// statistics, graph-cache check markers): the file's access time, set explicitly by whoever uses it,
// its modification time (its content) kept. Left to the kernel the access time is coarse (relatime
// moves it at most daily) or frozen at the write (noatime mounts), and `cache prune --older-than`
// would take files in daily use for stale ones.
import fs from 'node:fs'

/** Records that `file` is being used now. Best effort: a read-only or another user's home keeps the kernel's time. */
export function markUsed(file: string): void {
  try {
    fs.utimesSync(file, new Date(), fs.statSync(file).mtime)
  } catch { /* not ours to change, or vanished: the use is simply not recorded */ }
}

/** When `file` was last used (ms since the epoch): the later of its access and modification times; 0 when it is gone. */
export function fileLastUsed(file: string): number {
  try {
    const st = fs.statSync(file)
    return Math.max(st.atimeMs, st.mtimeMs)
  } catch {
    return 0
  }
}
