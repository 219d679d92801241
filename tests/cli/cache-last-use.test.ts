// A variant's "last use" is set by the worker that scores it, not left to the kernel's access time
// (relatime moves it at most daily, noatime never): a variant in daily use is not pruned as stale.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const HOUR = 3_600_000

describe('cache: a variant\'s label and last use', () => {
  it('is the time a worker last opened it, so --older-than keeps a variant scored since', t => {
    const dir = tmpDir()
    const home = path.join(dir, 'home')
    const env = { MOE_HARNESS_HOME: home }
    writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 41 })
    const config = (task: string) => {
      const file = path.join(dir, `${task}.config.ts`)
      const body = { models: { m: 'm' }, methods: ['magnitude-pruning'], ratios: [0.5], tasks: [task], subset: { limit: 2 }, pool: { workers: 1, threads: 1 } }
      writeSweepConfig(file, body)
      return file
    }
    const db = path.join(dir, 'r.sqlite')
    assert.equal(runCli(['sweep', '--config', config('brown-cloze'), '--db', db], { env, cwd: dir }).status, 0)
    const variants = path.join(home, 'variants')
    const [folder] = fs.readdirSync(variants).filter(f => fs.existsSync(path.join(variants, f, 'edits.json')))
    const edits = path.join(variants, folder!, 'edits.json')
    // The sweep's store is not in the home and not passed: the sweeps' by-id index still says what the folder is.
    const listed = lastJson(runCli(['cache', '--json'], { env, cwd: dir }).stdout).areas.variants.items.find((e: any) => e.path.endsWith(folder!))
    assert.deepEqual([listed.variant.recordedAs, listed.variant.indexedAs], [[], ['magnitude-pruning ratio 0.5']])
    const text = runCli(['cache'], { env, cwd: dir }).stdout
    assert.match(text, /magnitude-pruning ratio 0\.5 \(by-id index\)/)
    assert.doesNotMatch(text, /not recorded in/)
    // Written a month ago, last read two hours ago, on a file whose reads never move its access time
    // (chattr +A: what every file is on a noatime mount): only the harness's own mark can.
    fs.utimesSync(edits, new Date(Date.now() - 2 * HOUR), new Date(Date.now() - 30 * 24 * HOUR))
    const noatime = spawnSync('chattr', ['+A', edits])
    if (noatime.status !== 0) return t.skip(`chattr +A is not supported here (${noatime.stderr || noatime.error?.message}): cannot model a noatime mount`)
    fs.readFileSync(edits)
    assert.ok(Date.now() - fs.statSync(edits).atimeMs >= 2 * HOUR - 60_000, 'reads do not move the access time')
    const lastUsed = () => {
      const list = lastJson(runCli(['cache', '--json'], { env, cwd: dir }).stdout)
      return Date.parse(list.areas.variants.items.find((e: any) => e.path.endsWith(folder!)).lastUsed)
    }
    assert.ok(Date.now() - lastUsed() >= 2 * HOUR - 60_000, 'listing is not a use')
    const before = Date.now()
    const again = runCli(['sweep', '--config', config('brown-agreement'), '--db', db, '--json'], { env, cwd: dir })
    assert.equal(again.status, 0, again.stderr)
    assert.equal(lastJson(again.stdout).completed, 1, 'the variant was scored on the new task')
    assert.ok(lastUsed() >= before - 1000, `last use ${new Date(lastUsed()).toISOString()} is the second sweep`)
    assert.ok(fs.statSync(edits).mtimeMs < Date.now() - 29 * 24 * HOUR, 'the content time stays')
    const prune = lastJson(runCli(['cache', 'prune', '--variants', '--older-than', '1h', '--json'], { env, cwd: dir }).stdout)
    assert.equal(JSON.stringify(prune).includes(folder!), false, JSON.stringify(prune))
    // Pruning the folder also drops the by-id index entry naming it (it would only be skipped later).
    const byId = path.join(variants, 'by-id')
    assert.equal(fs.readdirSync(byId).filter(f => f.endsWith('.json')).length, 1)
    const old = new Date(Date.now() - 3 * HOUR)
    fs.utimesSync(edits, old, old)
    const removed = runCli(['cache', 'prune', '--variants', '--yes', '--json'], { env, cwd: dir })
    assert.equal(removed.status, 0, removed.stderr)
    assert.equal(fs.existsSync(path.join(variants, folder!)), false)
    assert.deepEqual(fs.readdirSync(byId).filter(f => f.endsWith('.json')), [])
  })
})
