// The leases this sweep process holds on run keys while it scores them (the store's `leases` table), so
// cooperating sweeps on one store split the cells instead of scoring them twice. A heartbeat extends
// them while the process lives; a dead process's leases expire (or are taken over at once on this host).
import crypto from 'node:crypto'
import os from 'node:os'
import { runKeyText, type RunKey } from '../identity/keys.ts'
import type { ResultsStore } from '../store/resultsStore.ts'
import { processAlive } from '../util/processAlive.ts'

/**
 * 'claimed': this process scores the run now; 'complete': stored already (complete, or failed by a
 * cooperating process of this sweep); 'busy': another process holds it; 'held-here': another lane of
 * this process is scoring the same run (identical variants). Busy and held-here cells are retried later.
 */
export type Claim = 'claimed' | 'complete' | 'busy' | 'held-here'

/**
 * Whether a lease's owner (host:pid:random) is a process of this machine that has exited: its cells
 * are taken over at once instead of after the lease expires (a rerun after a crash does not wait).
 */
export function holderIsGone(holder: string): boolean {
  const [host, pid] = holder.split(':')
  if (host !== os.hostname() || !/^\d+$/.test(pid ?? '')) return false
  return !processAlive(Number(pid))
}

export class CellLeases {
  /** This process's lease owner id (host:pid:random). */
  readonly owner = `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`
  /** Failed runs stored after this moment were written by a cooperating process of this sweep: not retried. */
  readonly startedAt = new Date().toISOString()
  private readonly held = new Map<string, RunKey>()
  private readonly heartbeat: NodeJS.Timeout

  /** `ttlMs`: how long a claim stays reserved without a heartbeat. */
  constructor(private readonly store: ResultsStore, readonly ttlMs: number) {
    this.heartbeat = setInterval(() => { if (this.held.size) store.heartbeatLeases(this.owner, ttlMs) }, Math.max(200, ttlMs / 4))
    this.heartbeat.unref()
  }

  claim(key: RunKey): Claim {
    const text = runKeyText(key)
    if (this.held.has(text)) return 'held-here'
    const claim = this.store.claimCell(key, this.owner, this.ttlMs, this.startedAt, holderIsGone)
    if (claim === 'claimed') this.held.set(text, key)
    return claim
  }

  release(key: RunKey): void {
    this.held.delete(runKeyText(key))
    this.store.releaseCell(key, this.owner)
  }

  /** How long to wait before retrying deferred cells. */
  retryDelayMs(): number {
    return Math.min(1000, Math.max(100, this.ttlMs / 4))
  }

  /** Stops the heartbeat and gives back every lease still held (a sweep that stops early). */
  close(): void {
    clearInterval(this.heartbeat)
    for (const key of this.held.values()) this.store.releaseCell(key, this.owner)
    this.held.clear()
  }
}
