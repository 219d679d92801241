// Fresh-user trial 7: where a sweep's results go, said and checked. Found: `sweep` never said which
// store it wrote (a config's store is relative to the config; `report` then needs --db), so a user
// with a config had to guess the path to publish; `--db results/` created a database *file* named
// `results`; `--db "$DB"` with DB unset (an empty value) silently used the config's store; a config
// without `export default` was "models: Invalid input: expected record, received undefined"; one importing
// 'moe-harness' (no installed package) got no hint where defineConfig is.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
const body = {
  models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-agreement'],
  subset: { limit: 5 }, pool: { workers: 1, threads: 1 }, store: 'out/results.sqlite', report: { outDir: 'my site', title: "Lab's MoE board" },
}

describe('the results store of a sweep', () => {
  it('the summary names the store and a report command that, run as printed, publishes it', () => {
    const exp = path.join(dir, 'exp')
    fs.mkdirSync(exp)
    const config = writeSweepConfig(path.join(exp, 'my.config.ts'), body)
    const r = runCli(['sweep', '--config', config], { env, cwd: dir })
    assert.equal(r.status, 0, r.stderr)
    const line = r.stderr.split('\n').find(l => l.startsWith('results in '))
    assert.equal(line, `results in exp/out/results.sqlite; leaderboard: moe-harness report --db exp/out/results.sqlite --out 'exp/my site' --title 'Lab'\\''s MoE board' (moe-harness start runs the sweep and then the report)`)
    const command = line!.slice(line!.indexOf('moe-harness report'), line!.indexOf(' (moe-harness start'))
    const run = spawnSync('bash', ['-c', command.replace(/^moe-harness/, `${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(ROOT, 'bin/moe-harness.mjs'))}`)], { cwd: dir, encoding: 'utf8', env: { ...process.env, ...env } })
    assert.equal(run.status, 0, run.stderr)
    assert.match(fs.readFileSync(path.join(exp, 'my site', 'index.html'), 'utf8'), /<title>[^<]*Lab&#x27;s MoE board/)
  })

  it('a shard names its own store and the merge that comes first', () => {
    const config = writeSweepConfig(path.join(dir, 'shard.config.ts'), body)
    const r = runCli(['sweep', '--config', config, '--shard', '0/2', '--db', 'shard0.sqlite'], { env, cwd: dir })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stderr, /\nresults of shard 0\/2 in shard0\.sqlite; when every shard is done: moe-harness merge <every shard's store> --out all\.sqlite, then moe-harness report --db all\.sqlite --out 'my site'/)
  })

  for (const [db, message] of [
    ['', /error \[STORE_FAILED\]: --db is empty; give the results database's file path/],
    ['results/', /error \[STORE_FAILED\]: --db results\/ ends with a slash, so it names a folder, not a database file; pass a file path such as results\/results\.sqlite\./],
  ] as const) {
    it(`--db '${db}' is refused before any work; nothing is created`, () => {
      const cwd = fs.mkdtempSync(path.join(dir, 'db-'))
      const config = writeSweepConfig(path.join(cwd, 'c.config.ts'), body)
      const r = runCli(['sweep', '--config', config, '--db', db], { env, cwd })
      assert.equal(r.status, 1, r.stderr)
      assert.match(r.stderr, message)
      assert.doesNotMatch(r.stderr, /^pool:/m)
      assert.deepEqual(fs.readdirSync(cwd), ['c.config.ts'])
    })
  }

  it("a config outside the project importing 'moe-harness' is told where defineConfig is", () => {
    const file = path.join(dir, 'pkg.config.ts')
    fs.writeFileSync(file, `import { defineConfig } from 'moe-harness'\nexport default defineConfig(${JSON.stringify(body)})\n`)
    const r = runCli(['sweep', '--config', file], { env, cwd: dir })
    assert.equal(r.status, 1)
    assert.match(r.stderr, new RegExp(`Cannot find module 'moe-harness'[^]*\\(the harness is not an installed package: import defineConfig from "${path.join(ROOT, 'src/index.ts')}", or default-export a plain object\\)`))
  })

  it('a misspelt model name in allowNonfinite gets the closest model name', () => {
    const config = writeSweepConfig(path.join(dir, 'nonfinite.config.ts'), { ...body, allowNonfinite: ['tyni'] })
    const r = runCli(['sweep', '--config', config], { env, cwd: dir })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /allowNonfinite names 'tyni', not a key of models \(tiny\) \(did you mean tiny\?\)\./)
  })

  it('a methods entry of the wrong shape says what an entry looks like (zod said "Invalid input")', () => {
    const config = writeSweepConfig(path.join(dir, 'entry.config.ts'), { ...body, methods: ['reap', { name: 'ean' }] })
    const r = runCli(['sweep', '--config', config], { env, cwd: dir })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /is invalid: methods\.1: each entry is a method name \('reap'\) or \{ method: 'reap', params: \{ name: value or \[values to sweep\] \} \}\./)
  })

  it('a config without a default export says so and names what it exports', () => {
    const file = path.join(dir, 'named.config.ts')
    fs.writeFileSync(file, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport const config = defineConfig(${JSON.stringify(body)})\n`)
    const r = runCli(['sweep', '--config', file], { env, cwd: dir })
    assert.equal(r.status, 1)
    assert.match(r.stderr, /error \[HARNESS_CONFIG_INVALID\]: .*named\.config\.ts has no default export: the config must be `export default defineConfig\(\{ \.\.\. \}\)` \(the file exports 'config': make the config its default export\)\./)
  })
})
