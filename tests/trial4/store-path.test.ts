// Fresh-user trial 4: where a sweep's results store is. A config's `store` resolved against the current
// folder while its models, dataDir and report.outDir resolve against the config's folder, so
// `sweep --slurm --config exp/harness.config.ts` submitted from the project and resumed from exp/ used
// two stores (the resume re-ran every cell), and `start` put the site in exp/ and the store in the
// project. With no `store`, results went to ./.harness/results.sqlite whatever $MOE_HARNESS_HOME said,
// while README and `moe-harness cache` look for the default store in the home.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, lastJson, runCli } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const exp = path.join(dir, 'exp')
fs.mkdirSync(exp)
const body = (store?: string) => ({
  models: { tiny: path.join(ROOT, 'models/tiny-moe') }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'],
  subset: { limit: 2 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 }, ...(store ? { store } : {}),
  cluster: { arraySize: 2 },
})
const writeConfig = (file: string, store?: string) =>
  fs.writeFileSync(file, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\nexport default defineConfig(${JSON.stringify(body(store))})\n`)

describe('the results store a config names', () => {
  it("a config's relative store is next to the config, whichever folder the command runs from", () => {
    const config = path.join(exp, 'harness.config.ts')
    writeConfig(config, 'results.sqlite')
    const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
    const r = runCli(['sweep', '--config', 'exp/harness.config.ts', '--json'], { cwd: dir, env })
    assert.equal(r.status, 0, r.stderr)
    assert.equal(lastJson(r.stdout).cells, 1)
    assert.ok(fs.existsSync(path.join(exp, 'results.sqlite')), 'the store is in the config folder')
    assert.equal(fs.existsSync(path.join(dir, 'results.sqlite')), false, 'not in the current folder')
    // The same cluster submission from either folder: one store, one state folder.
    for (const [cwd, file] of [[dir, 'exp/harness.config.ts'], [exp, 'harness.config.ts']]) {
      const dry = runCli(['sweep', '--slurm', '--dry-run', '--config', file], { cwd, env })
      assert.equal(dry.status, 0, dry.stderr)
      assert.match(dry.stdout, new RegExp(`STATE_DIR=${path.join(exp, 'slurm-results').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\n`))
      assert.match(dry.stdout, /1 more already complete in \S+exp\/results\.sqlite/, 'the held cell is found from either folder')
    }
    // --db stays relative to the current folder.
    const flagged = runCli(['sweep', '--config', 'exp/harness.config.ts', '--db', 'mine.sqlite', '--json'], { cwd: dir, env })
    assert.equal(flagged.status, 0, flagged.stderr)
    assert.ok(fs.existsSync(path.join(dir, 'mine.sqlite')))
  })

  it('without store, results go to results.sqlite in $MOE_HARNESS_HOME, where `cache` reads them', () => {
    const folder = path.join(dir, 'nostore')
    fs.mkdirSync(folder)
    writeConfig(path.join(folder, 'harness.config.ts'))
    const home = path.join(dir, 'home2')
    const r = runCli(['sweep', '--json'], { cwd: folder, env: { MOE_HARNESS_HOME: home } })
    assert.equal(r.status, 0, r.stderr)
    assert.ok(fs.existsSync(path.join(home, 'results.sqlite')), 'the default store is in the home')
    assert.equal(fs.existsSync(path.join(folder, '.harness')), false, 'no ./.harness beside a home set elsewhere')
    const cache = runCli(['cache', 'list', '--json'], { cwd: folder, env: { MOE_HARNESS_HOME: home } })
    assert.equal(cache.status, 0, cache.stderr)
    const [variant] = lastJson(cache.stdout).areas.variants.items
    assert.deepEqual(variant.variant.stores, [path.join(home, 'results.sqlite')], 'cache finds the sweep\'s store by default')
    assert.deepEqual(variant.variant.recordedAs, ['tiny: frequency-pruning ratio 0'])
  })
})
