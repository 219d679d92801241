// Worker threads (or processes) that find the same graph cache entry damaged build it at the same
// time and each replace it (src/onnx/graphStore.ts). A damaged entry is common after a copied or
// re-owned home (chown -R, cp -a: derived.bin's ctime and inode move, so its entry no longer matches
// its manifest). One replacing builder moved the entry aside while another had just renamed its own in,
// and the slower one's rename failed: "ENOTEMPTY: directory not empty, rename .building-..." escaped
// storedScoringGraph (a pool worker's session build failed, the cell with it). Here several threads
// start at one barrier, round after round on a freshly damaged entry; every one must get the clean
// build's graph and derived weights, and no temp folder may stay behind.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { storedScoringGraph } from '../../src/onnx/graphStore.ts'
import { halvedLayer0 } from '../helpers/edits.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const THREADS = 6
const ROUNDS = 16

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'qwen3_moe', seed: 5, dtype: 'BF16' }).dir
const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex')
// tsx's loader is per thread: each worker registers it before importing its TypeScript.
const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(m => { m.register(); return import(${JSON.stringify(new URL('./cache-graph-race.worker.ts', import.meta.url).href)}) })`

interface Got { ok: boolean; dir?: string; model?: string; derived?: string; error?: string }

async function round(root: string): Promise<Got[]> {
  const barrier = new SharedArrayBuffer(8)
  const flag = new Int32Array(barrier)
  const workers = Array.from({ length: THREADS }, () => new Worker(boot, { eval: true, workerData: { model, root, barrier } }))
  const got = workers.map(w => new Promise<Got>((resolve, reject) => { w.once('message', resolve); w.once('error', reject) }))
  while (Atomics.load(flag, 1) < THREADS) await new Promise(r => setTimeout(r, 5))
  Atomics.store(flag, 0, 1)
  Atomics.notify(flag, 0)
  try {
    return await Promise.all(got)
  } finally {
    await Promise.all(workers.map(w => w.terminate()))
  }
}

describe('threads replacing one damaged graph cache entry at once', () => {
  it('all get the clean build, every round, and leave no temp folder', async () => {
    const ckpt = openCheckpoint(model, { warn: () => {} })
    const clean = storedScoringGraph(ckpt, halvedLayer0(ckpt), {}, path.join(dir, 'clean'))
    const want = { derived: sha(fs.readFileSync(path.join(clean.dir, 'derived.bin'))) }
    const root = path.join(dir, 'home')
    const first = storedScoringGraph(ckpt, halvedLayer0(ckpt), {}, root)
    const entry = first.dir
    // graph.onnx names its derived.bin by absolute path, so the graph is compared with this home's first build.
    const wantModel = sha(first.model)
    const failures: string[] = []
    for (let r = 0; r < ROUNDS; r++) {
      fs.appendFileSync(path.join(entry, 'derived.bin'), 'x') // no longer the file its manifest describes
      for (const g of await round(root)) {
        if (!g.ok) failures.push(`round ${r}: ${g.error!.split('\n').slice(0, 3).join(' | ')}`)
        else assert.deepEqual({ dir: g.dir, model: g.model, derived: g.derived }, { dir: entry, model: wantModel, derived: want.derived })
      }
    }
    assert.deepEqual(failures, [])
    assert.deepEqual(fs.readdirSync(path.join(root, 'graphs')).filter(n => !n.startsWith('.finite-')), [path.basename(entry)])
  })
})
