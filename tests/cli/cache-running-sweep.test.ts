// `cache prune` and a sweep running on a store it was not told about (a config's `store` outside the
// harness home): the sweep reads a variant's folder for every cell, but holds a lease only while it
// scores one, so a prune between two cells removed the folder and the sweep's next cell failed with
// SESSION_FAILED (ENOENT on overrides-0.safetensors; found by a fresh-user trial). A store that a
// running process is writing is now found in /proc and its variants are kept; a read-only opener
// (report, export) does not count. The listing also names a variant's non-default parameters, so two
// magnitude-pruning variants at one ratio (score=magnitude and score=wanda) can be told apart.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { storesOpenForWriting } from '../../src/cache/openStores.ts'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const DAY = 86_400_000

describe('cache prune keeps the variants of a store a running process is writing', () => {
  const dir = tmpDir()
  const home = path.join(dir, 'home')
  const store = path.join(dir, 'sweep-results.sqlite') // outside the home: not the default --db
  const env = { MOE_HARNESS_HOME: home }
  const cache = (...args: string[]) => runCli(['cache', ...args], { env, cwd: dir })
  const folders: Record<string, string> = {} // score -> variant folder name

  before(() => {
    writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 41 })
    const body = {
      models: { m: 'm' }, methods: [{ method: 'magnitude-pruning', params: { score: ['magnitude', 'wanda'] } }], ratios: [0.5],
      tasks: ['brown-cloze'], subset: { limit: 2 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 }, store: 'sweep-results.sqlite',
    }
    const config = path.join(dir, 'c.config.ts')
    writeSweepConfig(config, body)
    const sweep = runCli(['sweep', '--config', config, '--json'], { env, cwd: dir })
    assert.equal(sweep.status, 0, sweep.stderr)
    assert.equal(lastJson(sweep.stdout).completed, 2)
    const s = new ResultsStore(store, { readonly: true })
    for (const m of s.storedModels()) for (const v of s.storedVariants(m.id)) if (v.status === 'ready') folders[String(v.params.score)] = `${m.id.slice(0, 16)}-${v.contentHash}`
    s.close()
    assert.deepEqual(Object.keys(folders).sort(), ['magnitude', 'wanda'])
    // Unused for two days as far as file times tell (a sweep's reads do not move relatime access times).
    const old = new Date(Date.now() - 2 * DAY)
    for (const f of Object.values(folders)) fs.utimesSync(path.join(home, 'variants', f, 'edits.json'), old, old)
  })

  it('storesOpenForWriting finds a store this process writes, not one it only reads', () => {
    const writer = new ResultsStore(store)
    try {
      assert.deepEqual(storesOpenForWriting(-1).get(fs.realpathSync(store)), [process.pid])
      assert.equal(storesOpenForWriting().has(fs.realpathSync(store)), false, 'the caller itself is left out')
    } finally {
      writer.close()
    }
    const reader = new ResultsStore(store, { readonly: true })
    try {
      assert.equal(storesOpenForWriting(-1).has(fs.realpathSync(store)), false)
    } finally {
      reader.close()
    }
  })

  it('while the store is written, the listing labels its variants (parameters included) and prune keeps them; once closed, prune removes them', () => {
    const writer = new ResultsStore(store) // what a running sweep holds between its leases
    try {
      const list = lastJson(cache('list', '--json').stdout)
      const items = list.areas.variants.items.filter((e: any) => e.kind === 'variant')
      assert.equal(items.length, 2)
      for (const [score, f] of Object.entries(folders)) {
        const e = items.find((x: any) => x.name === `variants/${f}`)
        assert.deepEqual(e.variant.recordedAs, [score === 'wanda' ? 'm: magnitude-pruning score=wanda ratio 0.5' : 'm: magnitude-pruning ratio 0.5'])
        assert.equal(e.variant.writtenBy, `pid ${process.pid}, writing ${fs.realpathSync(store)}`)
      }
      assert.deepEqual(list.writing, [{ store: fs.realpathSync(store), pids: [process.pid] }])
      const text = cache('list')
      assert.match(text.stdout, new RegExp(`note: .*sweep-results\\.sqlite is being written by pid ${process.pid}`))

      const r = cache('prune', '--variants', '--older-than', '1d', '--yes', '--json')
      assert.equal(r.status, 0, r.stderr)
      const result = lastJson(r.stdout)
      assert.deepEqual(result.removed, [])
      assert.deepEqual(result.kept.map((k: any) => k.name).sort(), Object.values(folders).map(f => `variants/${f}`).sort())
      for (const k of result.kept) assert.match(k.reason, /recorded in a store a running process is writing \(pid \d+, writing .*sweep-results\.sqlite\)/)
      for (const f of Object.values(folders)) assert.ok(fs.existsSync(path.join(home, 'variants', f, 'edits.json')), f)
    } finally {
      writer.close()
    }

    // Only read (a report): not in use. Without --db the listing names them from the sweeps' by-id index.
    const reader = new ResultsStore(store, { readonly: true })
    try {
      const text = cache('list')
      assert.match(text.stdout, /magnitude-pruning [^\n]*score=wanda ratio 0\.5 \(by-id index\)/)
      assert.match(text.stdout, /magnitude-pruning [^\n]*score=magnitude ratio 0\.5 \(by-id index\)/)
      assert.doesNotMatch(text.stdout, /not recorded in a store/)
      const r = cache('prune', '--variants', '--older-than', '1d', '--yes', '--json')
      assert.equal(r.status, 0, r.stderr)
      assert.deepEqual(lastJson(r.stdout).removed.map((e: any) => e.name).sort(), Object.values(folders).map(f => `variants/${f}`).sort())
    } finally {
      reader.close()
    }
    for (const f of Object.values(folders)) assert.equal(fs.existsSync(path.join(home, 'variants', f)), false, f)
  })
})
