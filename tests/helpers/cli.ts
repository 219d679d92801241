import { spawnSync } from 'node:child_process'
import path from 'node:path'

export const ROOT = path.resolve(import.meta.dirname, '..', '..')
const BIN = path.join(ROOT, 'bin', 'moe-harness.mjs')

export interface CliResult { status: number; stdout: string; stderr: string }

/** Runs the real CLI in a child process. */
export function runCli(args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT, encoding: 'utf8', env: { ...process.env, ...options.env }, timeout: options.timeoutMs ?? 300_000,
  })
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

/** The JSON object on the last line of stdout. */
export function lastJson(stdout: string): any {
  const lines = stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1])
}
