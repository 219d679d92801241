// An entry set aside for removal (renamed `.building-evicted-…` by eviction, `.building-pruned-…` by
// cache prune, then deleted) and left by a remover that was killed is garbage at once: nothing reads it
// again. It was listed as "graph being built, kept" for an hour, taking its bytes with it. A build's own
// folder (`.building-<key>-…`) still counts as live until STALE_BUILD_MS.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { REMOVAL_ASIDE } from '../../src/onnx/graphStore.ts'

describe('graph-cache folders set aside for removal', () => {
  it('are leftovers at once, removed by cache prune; a build in progress is kept', () => {
    const home = tmpDir()
    const graphs = path.join(home, 'graphs')
    const key = 'a'.repeat(32)
    const folders = {
      evicted: `${REMOVAL_ASIDE.evicted}${key}-4242-0badc0de`,
      pruned: `${REMOVAL_ASIDE.pruned}${key}-4243-0badc0de`,
      building: `.building-${'b'.repeat(32)}-${process.pid}-0badc0de`,
    }
    for (const name of Object.values(folders)) {
      fs.mkdirSync(path.join(graphs, name), { recursive: true })
      fs.writeFileSync(path.join(graphs, name, 'derived.bin'), new Uint8Array(5000))
    }
    const env = { MOE_HARNESS_HOME: home }
    const items = lastJson(runCli(['cache', 'list', '--json'], { env }).stdout).areas.graphs.items as { name: string; state: string; note: string }[]
    const state = (name: string) => items.find(e => e.name === `graphs/${name}`)
    assert.equal(state(folders.evicted)?.state, 'leftover')
    assert.match(state(folders.evicted)!.note, /set aside for removal/)
    assert.equal(state(folders.pruned)?.state, 'leftover')
    assert.equal(state(folders.building)?.state, 'live')
    const r = runCli(['cache', 'prune', '--yes', '--json'], { env })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(fs.readdirSync(graphs).sort(), [folders.building])
  })
})
