// Which results databases running processes of this machine are writing: how `cache prune` knows a
// sweep is running on a store it was not told about (a config's `store` outside the harness home is
// the usual case). A sweep holds a lease only on the cell it is scoring, not while it prepares the
// next variant or between cells, yet a worker reads a variant's folder for every cell; so a variant
// that such a store records may be read at any moment and must stay while the store is being written.
// Linux only (/proc/<pid>/fd and fdinfo); elsewhere, or for processes of other users that /proc
// hides, nothing is found and only --db and leases protect a running sweep.
import fs from 'node:fs'
import path from 'node:path'

// The database file itself: a read-only connection may still open its -shm file for writing.
const STORE_FILE = /\.(sqlite|sqlite3|db)$/
const O_ACCMODE = 0o3
const O_RDONLY = 0

/**
 * Absolute paths of files with a store-like name (`.sqlite`, `.sqlite3`, `.db`) that some process
 * other than `self` has open for writing (a sweep, a merge),
 * each with the pids that do. Read-only openers (`report`, `export`, `cache` itself) are left out.
 * Whether a file is a harness store is for the caller to check (describeDatabase).
 */
export function storesOpenForWriting(self = process.pid, proc = '/proc'): Map<string, number[]> {
  const found = new Map<string, number[]>()
  let pids: string[]
  try {
    pids = fs.readdirSync(proc).filter(n => /^\d+$/.test(n))
  } catch {
    return found // no /proc: not Linux
  }
  for (const pid of pids) {
    if (Number(pid) === self) continue
    let fds: string[]
    try {
      fds = fs.readdirSync(path.join(proc, pid, 'fd'))
    } catch {
      continue // gone, or another user's process
    }
    for (const fd of fds) {
      let target: string
      try {
        target = fs.readlinkSync(path.join(proc, pid, 'fd', fd))
      } catch {
        continue
      }
      if (!target.startsWith('/') || !STORE_FILE.test(target)) continue
      if (!openForWriting(path.join(proc, pid, 'fdinfo', fd))) continue
      const holders = found.get(target) ?? []
      if (!holders.includes(Number(pid))) found.set(target, [...holders, Number(pid)])
    }
  }
  return found
}

/** Whether the descriptor's fdinfo says it was opened for writing (flags are octal; an unreadable one counts as writing). */
function openForWriting(fdinfo: string): boolean {
  try {
    const flags = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(fdinfo, 'utf8'))
    return !flags || (parseInt(flags[1]!, 8) & O_ACCMODE) !== O_RDONLY
  } catch {
    return true
  }
}
