// A full harness home must cost only the reuse of its caches, never the run: the graph cache
// (src/onnx/graphStore.ts) and its NaN/Inf marker, like the calibration cache, are caches. On a full
// disk `eval` failed after calibrating, with "Cannot write: the disk holding a file is full" (the
// .finite marker, no path) or FILE_ACCESS "the graph cache ran out of disk space" (a graph entry),
// though the graph could be built in a temporary folder as for a read-only home. Here the home is a
// 2 MiB tmpfs filled to several levels (needs root and mount; skipped otherwise); every run must give
// the scores of a run on an ordinary disk, and so must the run after space is freed (no half-written
// entry used).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { runCli, lastJson } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'olmoe', seed: 3 }).dir
// Not under tmpDir(): its removal runs before this file's own after hook could unmount.
const full = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-harness-full-'))
const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', full]).status === 0
after(() => {
  if (mounted) spawnSync('umount', [full])
  fs.rmSync(full, { recursive: true, force: true })
})

// Wanda: sequential calibration (graph slices), then a graph with derived weights (derived.bin).
const args = ['eval', '--model', model, '--method', 'magnitude-pruning', '--param', 'score=wanda', '--ratio', '0.5', '--tasks', 'brown-perplexity', '--limit', '3', '--calibration-sequences', '8', '--json']
const evalIn = (home: string) => runCli(args, { env: { MOE_HARNESS_HOME: home } })

/** Fills the tmpfs but `freeBytes`. */
function fill(freeBytes: number): void {
  const st = fs.statfsSync(full)
  const free = st.bavail * st.bsize
  if (free > freeBytes) fs.writeFileSync(path.join(full, 'filler'), Buffer.alloc(free - freeBytes))
}

describe('a full harness home', { skip: mounted ? false : 'needs root to mount a small tmpfs' }, () => {
  const clean = evalIn(path.join(dir, 'clean-home'))
  const reference = () => {
    assert.equal(clean.status, 0, clean.stderr)
    return lastJson(clean.stdout).results
  }

  for (const freeKiB of [0, 60, 200]) {
    it(`scores as on an ordinary disk with ${freeKiB} KiB free, and after space is freed`, () => {
      const home = path.join(full, `home-${freeKiB}`)
      fill(freeKiB * 1024)
      const r = evalIn(home)
      assert.equal(r.status, 0, r.stderr)
      assert.doesNotMatch(r.stderr, /error \[|\n\s+at /)
      assert.deepEqual(lastJson(r.stdout).results, reference())
      assert.match(r.stderr, /warning: the graph cache .* MOE_HARNESS_HOME/)
      fs.rmSync(path.join(full, 'filler'), { force: true })
      const again = evalIn(home)
      assert.equal(again.status, 0, again.stderr)
      assert.deepEqual(lastJson(again.stdout).results, reference())
      fs.rmSync(home, { recursive: true, force: true })
    })
  }
})
