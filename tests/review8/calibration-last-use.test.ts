// Review 8 (issue 10 §5: the papers' 128 x 2048 calibration takes hours at real size): a calibration
// cache entry's "last use" for `cache list` and `cache prune --older-than` was its write time, since
// reading it from the cache recorded nothing; so `cache prune --calibration --older-than 7d` removed
// statistics computed 8 days ago that a sweep had reused that very day, and the next sweep recomputed
// them. A cache hit now records the use (the file's access time, as variant folders do).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'olmoe', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 9 })
const home = path.join(dir, 'home')
const env = { MOE_HARNESS_HOME: home }
const evalReap = () => {
  const r = runCli(['eval', '--model', model.dir, '--tasks', 'brown-agreement', '--limit', '2', '--method', 'reap', '--ratio', '0.5', '--calibration-sequences', '2', '--calibration-length', '32'], { env })
  assert.equal(r.status, 0, r.stderr)
}
const calibrationFiles = () => fs.readdirSync(path.join(home, 'calibration')).filter(n => n.endsWith('.v8'))
const prune = () => lastJson(runCli(['cache', 'prune', '--calibration', '--older-than', '7d', '--json'], { env }).stdout)

describe('a calibration entry reused from the cache', () => {
  it('counts as used now: cache prune --older-than keeps it; unused for 10 days it goes', () => {
    evalReap()
    const [file] = calibrationFiles()
    assert.ok(file, 'the calibration statistics were cached')
    const full = path.join(home, 'calibration', file!)
    const tenDaysAgo = new Date(Date.now() - 10 * 86_400_000)
    fs.utimesSync(full, tenDaysAgo, tenDaysAgo)
    assert.deepEqual(prune().selected.map((e: { name: string }) => e.name), [`calibration/${file}`], 'unused for 10 days: selected')
    evalReap() // reads the cached statistics
    assert.deepEqual(calibrationFiles(), [file], 'reused, not recomputed')
    assert.ok(Math.abs(fs.statSync(full).mtimeMs - tenDaysAgo.getTime()) < 1000, 'the content (mtime) is unchanged')
    const after = prune()
    assert.deepEqual(after.selected, [], 'used just now: not selected')
    const listed = lastJson(runCli(['cache', 'list', '--json'], { env }).stdout).areas.calibration.items.find((e: { name: string }) => e.name === `calibration/${file}`)
    assert.ok(Date.now() - Date.parse(listed.lastUsed) < 5 * 60_000, `last use ${listed.lastUsed}`)
  })
})
