// Fresh-user trial 5: a misspelt option is named as such, with the closest option, even when the option
// it misspells is mandatory. Found: `eval --modle DIR` said "required option '--model <dir>' not
// specified" (commander checks mandatory options before unknown ones), never naming the typo.
// A cluster-only sweep option without --slurm was ignored silently.
// Also: a parameter name a user spells the British way (renormalise for renormalizeRouterWeights)
// gets the parameter it begins like as a suggestion.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { closest } from '../../src/util/suggest.ts'
import { tmpDir } from '../helpers/tmp.ts'

describe('option typos', () => {
  const cases: [args: string[], message: RegExp][] = [
    [['eval', '--modle', 'models/tiny-moe'], /^error: unknown option '--modle'\n\(Did you mean --model\?\)/],
    [['report', '--dbb', 'x.sqlite'], /^error: unknown option '--dbb'\n\(Did you mean --db\?\)/],
    [['transform', '--model', 'models/tiny-moe', '--method', 'reap', '--otu', 'x'], /^error: unknown option '--otu'\n\(Did you mean --out\?\)/],
    // A missing mandatory option is still reported as before, with the usage exit code.
    [['eval', '--tasks', 'brown-cloze'], /^error: required option '--model <dir>' not specified\n\(run with --help for usage\)/],
    [['merge', 'a.sqlite'], /^error: required option '--out <file>' not specified/],
    [['cache', 'list', '--jsn'], /^error: unknown option '--jsn'\n\(Did you mean --json\?\)/],
    // `cache` runs `list` by default, which took the typo as an argument: "too many arguments for 'list'".
    [['cache', 'lst'], /^error: unknown command 'lst'\n\(Did you mean list\?\)/],
    [['cache', 'prnue'], /^error: unknown command 'prnue'\n\(Did you mean prune\?\)/],
  ]
  for (const [args, message] of cases) {
    it(args.join(' '), () => {
      const r = runCli(args)
      assert.equal(r.status, 2, r.stderr)
      assert.match(r.stderr, message)
      assert.equal(r.stdout, '')
    })
  }

  it('a cluster option on a local sweep is refused before any work (it was ignored)', () => {
    const dir = tmpDir()
    const config = writeSweepConfig(path.join(dir, 'harness.config.ts'), { models: { tiny: path.join(ROOT, 'models/tiny-moe') }, tasks: ['brown-cloze'], store: 'results.sqlite' })
    for (const [args, message] of [
      [['--array-size', '8'], /error \[INVALID_ARGUMENT\]: --array-size applies to a cluster sweep only: add --slurm \(or --k8s-manifest FILE\)/],
      [['--partition', 'gpu', '--time', '01:00:00'], /error \[INVALID_ARGUMENT\]: --partition, --time apply to a cluster sweep only/],
    ] as const) {
      const r = runCli(['sweep', '--config', config, ...args], { cwd: dir, env: { MOE_HARNESS_HOME: path.join(dir, 'home') } })
      assert.equal(r.status, 1, r.stderr)
      assert.match(r.stderr, message)
      assert.deepEqual(fs.readdirSync(dir), ['harness.config.ts'], 'no store, no home')
    }
  })

  it('cache with no subcommand still lists the home', () => {
    const home = path.join(tmpDir(), 'no-home')
    for (const args of [['cache'], ['cache', 'list', '--json']]) {
      const r = runCli(args, { env: { MOE_HARNESS_HOME: home } })
      assert.equal(r.status, 0, r.stderr)
      if (args.length === 1) assert.match(r.stdout, /No harness home at .*no-home/)
      else assert.deepEqual([JSON.parse(r.stdout).home, JSON.parse(r.stdout).exists], [home, false])
    }
  })

  it('the mandatory option given: the command runs (score prints the log-probabilities)', () => {
    const r = runCli(['score', '--model', 'models/tiny-moe', '--text', 'The jury said', '--json'])
    assert.equal(r.status, 0, r.stderr)
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!)
    assert.equal(out.logprobs.length, out.tokens.length - 1)
    assert.ok(out.logprobs.every((v: number) => v < 0))
  })

  it('a parameter name spelt another way suggests the parameter it begins like', () => {
    const r = runCli(['eval', '--model', 'models/tiny-moe', '--method', 'reap', '--param', 'renormalise=false', '--limit', '2'])
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /error \[UNKNOWN_NAME\]: Unknown parameter of method 'reap' 'renormalise'\. Did you mean: renormalizeRouterWeights\? Available: protectSuperExperts, ratio, renormalizeRouterWeights\./)
    // Only as a fallback: names with a close spelling keep their suggestions, unrelated names get none.
    assert.deepEqual(closest('scor', ['calibration', 'pattern', 'ratio', 'score']), ['score'])
    assert.deepEqual(closest('xyzw', ['protectSuperExperts', 'ratio', 'renormalizeRouterWeights']), [])
    assert.deepEqual(closest('zzzzzzzzzz', ['zzzzzzzzzzzzzzzzzzzz-but-different'.replace(/z/g, 'y')]), [])
  })
})
