// A graph build that writes derived weights keeps its folder's mtime fresh: appending to derived.bin
// does not change the folder's mtime, by which eviction and `cache prune` tell a dead build (older than
// STALE_BUILD_MS) from a live one, so a build writing for over an hour was listed as a leftover and
// could be removed under itself.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { BUILD_ALIVE_MS, derivedWriter, STALE_BUILD_MS } from '../../src/onnx/graphStore.ts'

const buildState = (home: string, name: string) =>
  lastJson(runCli(['cache', 'list', '--json'], { env: { MOE_HARNESS_HOME: home } }).stdout).areas.graphs.items.find((e: { name: string }) => e.name === `graphs/${name}`)?.state

describe('a graph build writing derived weights', () => {
  it('marks its folder alive as it writes, so it is not a leftover however long it runs', () => {
    assert.ok(BUILD_ALIVE_MS < STALE_BUILD_MS / 10)
    const home = tmpDir()
    const name = `.building-${'0'.repeat(32)}-${process.pid}-abcd1234`
    const folder = path.join(home, 'graphs', name)
    fs.mkdirSync(folder, { recursive: true })
    const started = new Date(Date.now() - 2 * STALE_BUILD_MS) // a build that began two hours ago
    fs.utimesSync(folder, started, started)
    assert.equal(buildState(home, name), 'leftover')
    const before = Date.now()
    const writer = derivedWriter(() => path.join(folder, 'derived.bin'), () => path.join(home, 'graphs', 'entry', 'derived.bin'))
    writer.files.appendDerived(new Uint8Array(100).fill(7))
    assert.ok(fs.statSync(folder).mtimeMs >= before - 1000, 'marked alive by the append')
    assert.equal(buildState(home, name), 'live')
    // Later appends within BUILD_ALIVE_MS leave the times alone (one utimes a minute, not one per tensor),
    // and the data lands 64-byte aligned as before.
    fs.utimesSync(folder, started, started)
    writer.files.appendDerived(new Uint8Array(10).fill(9))
    assert.ok(Math.abs(fs.statSync(folder).mtimeMs - started.getTime()) < 1000)
    writer.close(true)
    assert.equal(writer.size, 128 + 10)
    const data = fs.readFileSync(path.join(folder, 'derived.bin'))
    assert.deepEqual([data[99], data[100], data[127], data[128], data[137]], [7, 0, 0, 9, 9])
    // A later build of the same folder (a fresh writer) marks it on its first append.
    const again = derivedWriter(() => path.join(folder, 'derived.bin'), () => '')
    again.files.appendDerived(new Uint8Array(4))
    again.close(false)
    assert.ok(fs.statSync(folder).mtimeMs >= before - 1000)
    assert.equal(buildState(home, name), 'live')
  })
})
