// A process killed (SIGKILL) while the graph cache evicts (src/onnx/graphStore.ts evict) left entries
// half removed: a <key> folder that lost its manifest.json but kept files written after it (onnxruntime's
// optimized graph) or before it. Without a manifest the entry is "not ours, kept" to `moe-harness cache`
// and to eviction, so it stayed on disk for good. Here 40 entries made by real sessions (graph,
// derived.bin, manifest, optimized graph) are put back before each round, a child stores a new entry
// with a 0 GB limit (every older entry goes) and is killed a random few tens of ms in; every <key>
// folder left must still hold its manifest (what is half removed is a temp build's name, which the
// next eviction or `cache prune` clears once stale).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { openGraphSession } from '../../src/engine/graphSession.ts'
import { openCheckpoint } from '../../src/model/checkpoint.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { scaledExpert } from './cache-evict-kill.edits.ts'

const ROUNDS = 14
const ENTRIES = 40
const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'qwen3_moe', seed: 5, layers: 1, hidden: 16 }).dir
const child = path.join(import.meta.dirname, 'cache-evict-kill.child.ts')

/** Runs the child, kills it `delayMs` after it starts building; whether it finished first. */
function killedChild(root: string, factor: number, delayMs: number): Promise<boolean> {
  return new Promise(resolve => {
    const c = spawn(process.execPath, ['--import', 'tsx', child, model, root, String(factor)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    let timer: NodeJS.Timeout | undefined
    c.stdout.setEncoding('utf8').on('data', d => {
      out += d
      if (out.startsWith('go') && !timer) timer = setTimeout(() => c.kill('SIGKILL'), delayMs)
    })
    c.on('close', () => { clearTimeout(timer); resolve(out.includes('done')) })
  })
}

describe('a process killed while the graph cache evicts', () => {
  it('leaves every <key> folder a whole entry', async () => {
    const ckpt = openCheckpoint(model, { warn: () => {} })
    const template = path.join(dir, 'template')
    for (let f = 1; f <= ENTRIES; f++) {
      const s = await openGraphSession(ckpt, scaledExpert(ckpt, f), {}, { device: 'cpu', threads: 1, cacheDir: template })
      await s.release()
    }
    const graphs = path.join(template, 'graphs')
    const keys = fs.readdirSync(graphs).filter(n => /^[0-9a-f]{32}$/.test(n))
    assert.equal(keys.length, ENTRIES)
    assert.ok(keys.every(k => fs.readdirSync(path.join(graphs, k)).some(f => f.startsWith('optimized-'))), 'each entry keeps an optimized graph')
    const old = new Date(Date.now() - 10 * 60_000)
    for (const k of keys) fs.utimesSync(path.join(graphs, k, 'manifest.json'), old, old) // past RECENT_MS: evictable

    const root = path.join(dir, 'home')
    const broken: string[] = []
    let killed = 0
    for (let r = 0; r < ROUNDS; r++) {
      fs.rmSync(root, { recursive: true, force: true })
      fs.cpSync(template, root, { recursive: true, preserveTimestamps: true })
      if (!(await killedChild(root, 1000 + r, 30 + Math.random() * 30))) killed++
      for (const n of fs.readdirSync(path.join(root, 'graphs'))) {
        const entry = path.join(root, 'graphs', n)
        if (/^[0-9a-f]{32}$/.test(n) && !fs.existsSync(path.join(entry, 'manifest.json'))) broken.push(`round ${r}: ${n} holds ${fs.readdirSync(entry).join(', ') || 'nothing'}`)
      }
    }
    assert.ok(killed > 0, 'some child was killed before it finished')
    assert.deepEqual(broken, [])
  })
})
