// Whether a process of this machine still runs: how the harness tells a crashed writer's leftovers
// (leases, temp outputs, spill folders) from a live one's.

/** True unless no process `pid` exists (ESRCH); a process of another user (EPERM) counts as running. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}
