// Disk usage as `du` counts it (allocated blocks, folders included, symbolic links not followed),
// keyed by inode so a file hard-linked twice (a spill file and the variant folder that links it) is
// counted once, and so the bytes a removal frees are only those of inodes whose every link goes.
import fs from 'node:fs'
import path from 'node:path'

/** One inode: its allocated bytes, its link count, and how many of its links the walk saw. */
interface InodeUse { bytes: number; nlink: number; seen: number }

/** The inodes under one path, by `dev:ino`. */
export type Usage = Map<string, InodeUse>

/**
 * The inodes of `target` and, for a folder, of everything under it (symbolic links are counted as
 * themselves, never followed). Units: bytes allocated on disk (st.blocks × 512, as `du -B1`). Entries
 * that vanish during the walk (a concurrent eviction) are skipped.
 */
export function diskUsage(target: string): Usage {
  const usage: Usage = new Map()
  const visit = (p: string) => {
    let st: fs.Stats
    try {
      st = fs.lstatSync(p)
    } catch {
      return
    }
    const key = `${st.dev}:${st.ino}`
    const known = usage.get(key)
    if (known) known.seen++
    // A folder's link count includes its subfolders' '..' entries, which go with it: one link.
    else usage.set(key, { bytes: st.blocks * 512, nlink: st.isDirectory() ? 1 : st.nlink, seen: 1 })
    if (!st.isDirectory()) return
    let names: string[] = []
    try {
      names = fs.readdirSync(p)
    } catch { /* unreadable folder: its own blocks only */ }
    for (const name of names) visit(path.join(p, name))
  }
  visit(target)
  return usage
}

/** Bytes of `usages` together, every inode once. */
export function usageBytes(...usages: Usage[]): number {
  const seen = new Set<string>()
  let bytes = 0
  for (const u of usages) {
    for (const [key, use] of u) {
      if (seen.has(key)) continue
      seen.add(key)
      bytes += use.bytes
    }
  }
  return bytes
}

/**
 * Bytes that removing every path of `usages` gives back: an inode counts only when all its links are
 * among them (a file also linked from elsewhere, e.g. a live spill folder, stays on disk).
 */
export function freedBytes(usages: Usage[]): number {
  const links = new Map<string, InodeUse>()
  for (const u of usages) {
    for (const [key, use] of u) {
      const known = links.get(key)
      if (known) known.seen += use.seen
      else links.set(key, { ...use })
    }
  }
  let bytes = 0
  for (const use of links.values()) if (use.seen >= use.nlink) bytes += use.bytes
  return bytes
}

