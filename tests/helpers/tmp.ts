import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after } from 'node:test'

/** A fresh temporary folder, removed when the test file finishes. */
export function tmpDir(prefix = 'moe-harness-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Points MOE_HARNESS_HOME at `home` for this test file (in-process sweeps read it), restored when it finishes. */
export function useHarnessHome(home: string): void {
  const saved = process.env.MOE_HARNESS_HOME
  process.env.MOE_HARNESS_HOME = home
  after(() => {
    if (saved === undefined) delete process.env.MOE_HARNESS_HOME
    else process.env.MOE_HARNESS_HOME = saved
  })
}
