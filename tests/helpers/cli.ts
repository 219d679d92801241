import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export const ROOT = path.resolve(import.meta.dirname, '..', '..')
export const BIN = path.join(ROOT, 'bin', 'moe-harness.mjs')

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

export interface AsyncCliResult extends CliResult { timedOut: boolean; signal: NodeJS.Signals | null }

/**
 * Runs the real CLI in a child process without blocking the event loop, so several can run at once.
 * `uid`/`gid` run it as another user (only when the tests run as root). A run past `timeoutMs` is
 * killed and reported with `timedOut`.
 */
export function runCliAsync(args: string[], options: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number; uid?: number; gid?: number } = {}): Promise<AsyncCliResult> {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT, env: { ...process.env, ...options.env }, uid: options.uid, gid: options.gid, stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = '', stderr = '', timedOut = false
    child.stdout.setEncoding('utf8').on('data', d => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', d => { stderr += d })
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, options.timeoutMs ?? 300_000)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ status: code ?? -1, stdout, stderr, timedOut, signal })
    })
  })
}

/** Writes a sweep config (`defineConfig(body)`, imported from this checkout) to `file`; returns `file`. */
export function writeSweepConfig(file: string, body: unknown): string {
  fs.writeFileSync(file, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify(body)})\n`)
  return file
}
