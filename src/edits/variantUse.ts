// The clock of a variant folder's last use: its edits file's access time, set explicitly by whoever
// scores the variant. Left to the kernel it is coarse (relatime updates it at most daily) or frozen
// at the write time (noatime mounts), and `cache prune --older-than` would then take variants in
// daily use for stale ones.
import fs from 'node:fs'
import path from 'node:path'
import { markUsed } from '../util/lastUse.ts'

const EDITS_FILE = 'edits.json'

/**
 * Records that the variant folder `dir` is being used now: its edits file's access time becomes the
 * present, its modification time (the folder's content) stays. Best effort: a read-only or another
 * user's home keeps the kernel's own access time.
 */
export function markVariantUsed(dir: string): void {
  markUsed(path.join(dir, EDITS_FILE))
}

/**
 * When the variant folder `dir` was last used (ms since the epoch): the later of its edits file's
 * access and modification times, the folder's modification time when it has no edits file, 0 when
 * it vanished. Reading the time does not move it; `restore` puts back an access time that a read of
 * the file (by the caller) moved: looking is not using.
 */
export function variantLastUsed(dir: string): { lastUsedMs: number; restore: () => void } {
  const file = path.join(dir, EDITS_FILE)
  try {
    const times = fs.statSync(file)
    return {
      lastUsedMs: Math.max(times.atimeMs, times.mtimeMs),
      restore: () => {
        try { fs.utimesSync(file, times.atime, times.mtime) } catch { /* not ours to change (another user's home): a later list shows this read as a use */ }
      },
    }
  } catch {
    let lastUsedMs = 0
    try { lastUsedMs = fs.statSync(dir).mtimeMs } catch { /* vanished */ }
    return { lastUsedMs, restore: () => {} }
  }
}
