// The pool starts its workers at the first batch: a sweep that fails or is interrupted before
// scoring (calibration, variant preparation) starts none, so none is torn down half-loaded (a worker
// terminated while its ES modules are being instantiated aborts the process with a V8 fatal error).
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { createPool } from '../../src/pool/pool.ts'
import { tmpDir } from '../helpers/tmp.ts'

const ports = () => process.getActiveResourcesInfo().filter(r => r === 'MessagePort').length

describe('scoring pool lifecycle', () => {
  it('starts no worker before the first batch', async () => {
    const before = ports()
    const pool = createPool({ workers: 2, threads: 1, device: 'cpu' })
    await new Promise(r => setTimeout(r, 300))
    assert.equal(ports(), before, 'no worker threads (their message ports) yet')
    const t = performance.now()
    await pool.close()
    assert.ok(performance.now() - t < 1000)
  })

  it('a first batch starts them; close waits for every worker to finish loading, then ends them', async () => {
    const before = ports()
    const pool = createPool({ workers: 2, threads: 1, device: 'cpu' })
    const missing = path.join(tmpDir(), 'no-such-variant')
    // The second worker is still loading when this batch fails in the first (the error comes from the
    // worker, which read the folder); close must not end it mid-load.
    await assert.rejects(pool.runner(missing)({ inputIds: new BigInt64Array(0) } as never), (e: Error) => /no-such-variant|edits/.test(e.message))
    await pool.close()
    await new Promise(r => setTimeout(r, 100))
    assert.equal(ports(), before, 'every worker ended')
  })
})
