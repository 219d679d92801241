// `moe-harness cache` on a home whose `variants` (or graphs, calibration) folder is a symbolic link to
// another disk, as one moves the big area of a home: the harness writes through the link, so the cache
// command lists, sizes and prunes through it too (found by a fresh-user trial: it showed "variants: 0
// folders, 0 B" and "not ours, kept: variants (0 B)" while the linked folder held every variant).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

/** Bytes on disk as du counts them; `follow`: symbolic links on the command line dereferenced (-L). */
function du(follow: boolean, ...paths: string[]): number {
  const r = spawnSync('du', ['-s', '-B1', '-c', ...(follow ? ['-L'] : []), ...paths], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return Number(r.stdout.trim().split('\n').pop()!.split('\t')[0])
}

describe('cache with an area linked to another disk', () => {
  const dir = tmpDir()
  const home = path.join(dir, 'home')
  const elsewhere = path.join(dir, 'big-disk', 'variants')
  const env = { MOE_HARNESS_HOME: home }
  const cache = (...args: string[]) => runCli(['cache', ...args], { env, cwd: dir })
  const config = path.join(dir, 'c.config.ts')
  let folders: string[] = []

  before(() => {
    writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 61 })
    const body = { models: { m: 'm' }, methods: ['frequency-pruning', 'magnitude-pruning'], ratios: [0.5], tasks: ['brown-cloze'], subset: { limit: 2 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 } }
    writeSweepConfig(config, body)
    const sweep = runCli(['sweep', '--config', config, '--db', path.join(home, 'results.sqlite'), '--json'], { env, cwd: dir })
    assert.equal(sweep.status, 0, sweep.stderr)
    // The variants area moves to another disk, linked back.
    fs.mkdirSync(path.dirname(elsewhere))
    fs.renameSync(path.join(home, 'variants'), elsewhere)
    fs.symlinkSync(elsewhere, path.join(home, 'variants'))
    fs.writeFileSync(path.join(elsewhere, 'my-notes.txt'), 'mine\n')
    folders = fs.readdirSync(elsewhere).filter(n => /^[0-9a-f]{16}-[0-9a-f]{24}$/.test(n)).sort()
    assert.equal(folders.length, 2)
    const old = new Date(Date.now() - 2 * 86_400_000)
    for (const f of folders) fs.utimesSync(path.join(elsewhere, f, 'edits.json'), old, old)
  })

  it('lists the linked folder\'s variants with their sizes, and counts them in the total', () => {
    const list = lastJson(cache('list', '--json').stdout)
    const items = list.areas.variants.items.filter((e: any) => e.kind === 'variant')
    assert.deepEqual(items.map((e: any) => e.name).sort(), folders.map(f => `variants/${f}`))
    for (const e of items) {
      assert.equal(e.state, 'ok')
      assert.equal(e.bytes, du(false, path.join(elsewhere, path.basename(e.name))))
      assert.match(e.variant.recordedAs[0], /^m: (frequency|magnitude)-pruning ratio 0\.5$/)
    }
    assert.equal(list.areas.variants.entries, 2)
    assert.deepEqual(list.foreign.map((e: any) => e.name), ['variants/my-notes.txt'])
    assert.equal(list.totalBytes, du(true, home))
    assert.ok(list.totalBytes > du(false, home), 'the linked folder is counted')
  })

  it('prunes through the link: the folders go, the link and foreign files stay, and a sweep prepares them again there', () => {
    const r = cache('prune', '--variants', '--older-than', '1d', '--yes', '--json')
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(lastJson(r.stdout).removed.map((e: any) => e.name).sort(), folders.map(f => `variants/${f}`))
    assert.deepEqual(fs.readdirSync(elsewhere).filter(n => n !== 'by-id'), ['my-notes.txt']) // by-id: the index of prepared variants, kept
    assert.ok(fs.lstatSync(path.join(home, 'variants')).isSymbolicLink())
    const sweep = runCli(['sweep', '--config', config, '--db', path.join(dir, 'b.sqlite'), '--json'], { env, cwd: dir })
    assert.equal(sweep.status, 0, sweep.stderr)
    assert.deepEqual(fs.readdirSync(elsewhere).filter(n => n !== 'my-notes.txt' && n !== 'by-id').sort(), folders)
  })
})
