// The graph cache's per-checkpoint check markers (.finite-*: every weight checked for NaN/Inf;
// .float16-range-*: against float16's range) recorded no use, so `cache prune --graphs --older-than 7d`
// removed the marker of a checkpoint scored every day, and the next run read every weight again (minutes
// at real size). A run that relies on a marker now records the use, as variant folders and calibration
// statistics do (src/util/lastUse.ts), and prune re-checks it before removing.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'olmoe', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 11 })
const home = path.join(dir, 'home')
const env = { MOE_HARNESS_HOME: home }
const evalModel = (...extra: string[]) => {
  const r = runCli(['eval', '--model', model.dir, '--tasks', 'brown-agreement', '--limit', '2', '--threads', '1', ...extra], { env })
  assert.equal(r.status, 0, r.stderr)
}
const markers = () => fs.readdirSync(path.join(home, 'graphs')).filter(n => /^\.(finite|float16-range)-/.test(n)).sort()
const selectedMarkers = () => lastJson(runCli(['cache', 'prune', '--graphs', '--older-than', '7d', '--json'], { env }).stdout).selected
  .map((e: { name: string }) => path.basename(e.name)).filter((n: string) => n.startsWith('.')).sort()

describe('a graph-cache check marker a run relies on', () => {
  it('counts as used now: cache prune --older-than keeps it; unused for 10 days it goes', () => {
    evalModel()
    evalModel('--precision', 'float16')
    const names = markers()
    assert.deepEqual(names.map(n => n.replace(/-[0-9a-f]+$/, '')), ['.finite', '.float16-range'])
    const tenDaysAgo = new Date(Date.now() - 10 * 86_400_000)
    for (const n of names) fs.utimesSync(path.join(home, 'graphs', n), tenDaysAgo, tenDaysAgo)
    assert.deepEqual(selectedMarkers(), names, 'unused for 10 days: selected')
    // A variant's first graph relies on both (its graph is built, so the weights would be checked again without them).
    evalModel('--precision', 'float16', '--method', 'magnitude-pruning', '--ratio', '0.5')
    assert.deepEqual(markers(), names, 'reused, not rewritten')
    for (const n of names) {
      const st = fs.statSync(path.join(home, 'graphs', n))
      assert.ok(Math.abs(st.mtimeMs - tenDaysAgo.getTime()) < 1000, `${n}: the content (mtime) is unchanged`)
      assert.ok(Date.now() - st.atimeMs < 5 * 60_000, `${n}: used just now`)
    }
    assert.deepEqual(selectedMarkers(), [], 'used just now: not selected')
  })
})
