// Review 8 (issue 10 §3, a pool that fits): `sweep --help` / `start --help` said only "pool workers
// (overrides the config)": not that the pool starts fewer when they do not fit in memory (and says so
// on stderr), nor the defaults of --workers (1) and --threads (the cores shared by the workers started).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'

describe('sweep and start --help on the pool', () => {
  for (const command of ['sweep', 'start']) {
    it(`${command} --help gives the defaults and the memory rule`, () => {
      const r = runCli([command, '--help'])
      assert.equal(r.status, 0, r.stderr)
      const help = r.stdout.replace(/\s+/g, ' ')
      assert.match(help, /--workers <n> pool workers at most \(overrides the config's pool\.workers; default 1\): fewer start when they do not fit in the memory available, and the 'pool:' line on stderr says why/)
      assert.match(help, /--threads <n> intra-op threads per worker \(overrides the config's pool\.threads; default: the cores shared by the workers started\)/)
    })
  }
})
