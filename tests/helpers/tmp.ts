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
