// A measuring child process of the benchmarks (bench/scale.bench.ts, bench/gpu.bench.ts): its JSON lines
// by phase, its peak RSS polled from outside, and a cap at which its whole process group is killed.
import { spawn } from 'node:child_process'
import fs from 'node:fs'

export interface ChildResult {
  /** Every JSON line the child printed, by phase (the peer's last line under 'result'). */
  phases: Record<string, Record<string, unknown>>
  timedOut: boolean
  exitCode: number | null
  /** The child's VmHWM as last polled from outside (covers a child killed at the cap). */
  polledPeakRssBytes: number
  stderrTail: string
  wallSeconds: number
}

/**
 * Runs a child, polls its VmHWM, kills it (process group) at `capSeconds`; collects its JSON lines.
 * `onStderr` receives the child's whole stderr as it comes (a log; stderrTail keeps the end only).
 */
export function runChild(cmd: string, args: string[], env: NodeJS.ProcessEnv, capSeconds: number, onStderr?: (chunk: string) => void): Promise<ChildResult> {
  return new Promise(resolve => {
    const t0 = performance.now()
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    const phases: ChildResult['phases'] = {}
    let stdout = '', stderr = '', timedOut = false, polled = 0
    const take = (line: string) => {
      if (!line.startsWith('{')) return
      try {
        const o = JSON.parse(line) as Record<string, unknown>
        phases[typeof o.phase === 'string' ? o.phase : 'result'] = o
      } catch { /* not ours */ }
    }
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString()
      const lines = stdout.split('\n')
      stdout = lines.pop()!
      lines.forEach(take)
    })
    child.stderr.on('data', (b: Buffer) => { onStderr?.(b.toString()); stderr = (stderr + b.toString()).slice(-4000) })
    const poll = setInterval(() => {
      try {
        const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))
        if (m) polled = Math.max(polled, Number(m[1]) * 1024)
      } catch { /* exited */ }
    }, 250)
    const timer = setTimeout(() => {
      timedOut = true
      try { process.kill(-child.pid!, 'SIGKILL') } catch { /* gone */ }
    }, capSeconds * 1000)
    child.on('close', code => {
      clearInterval(poll)
      clearTimeout(timer)
      if (stdout) take(stdout)
      resolve({ phases, timedOut, exitCode: code, polledPeakRssBytes: polled, stderrTail: stderr.trim().split('\n').slice(-12).join(' | '), wallSeconds: (performance.now() - t0) / 1000 })
    })
  })
}
