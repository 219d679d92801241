// The shell expands '~' only at the start of a word, so `--db=~/results.sqlite` (or a quoted
// `--out '~/site'`) reaches the harness as a literal '~': a sweep then made a folder named '~' in the
// current folder, whose cleanup (`rm -rf ~`) deletes the user's home. The config's paths and
// MOE_HARNESS_HOME were refused already; a path flag is refused the same way, naming the flag and the
// path meant, before the command does anything.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli, writeSweepConfig } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir('moe-tilde-flags-')
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }

describe('a path flag beginning with an unexpanded ~', () => {
  it('sweep --db=~/results.sqlite is refused naming --db and the home path, and creates no ~ folder', () => {
    const config = writeSweepConfig(path.join(dir, 'c.config.ts'), {
      models: { m: path.join(ROOT, 'models', 'tiny-moe') }, methods: ['magnitude-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 2 }, pool: { workers: 1, threads: 1 },
    })
    const r = runCli(['sweep', '--config', config, '--db=~/results.sqlite'], { cwd: dir, env })
    assert.equal(r.status, 1, r.stderr)
    assert.match(r.stderr, /^error \[INVALID_ARGUMENT\]: --db '~\/results\.sqlite'/m)
    assert.ok(r.stderr.includes(path.join(os.homedir(), 'results.sqlite')), r.stderr)
    assert.deepEqual(fs.readdirSync(dir).sort(), ['c.config.ts'])
  })

  it('each kind of path flag (file, folder, list of files, path) is checked; a bare ~ too; other values are not', () => {
    const cases: [string[], string][] = [
      [['transform', '--model', path.join(ROOT, 'models', 'tiny-moe'), '--method', 'magnitude-pruning', '--ratio', '0.5', '--out=~/pruned'], '--out'],
      [['cache', '--db', '~/a.sqlite'], '--db'],
      [['score', '--model', '~', '--text', 'hello'], '--model'],
      [['score', '--model', path.join(ROOT, 'models', 'tiny-moe'), '--text-file=~/page.txt'], '--text-file'],
    ]
    for (const [args, flag] of cases) {
      const r = runCli(args, { cwd: dir, env })
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, new RegExp(`^error \\[INVALID_ARGUMENT\\]: ${flag} '~`, 'm'), args.join(' '))
    }
    assert.deepEqual(fs.readdirSync(dir).sort(), ['c.config.ts'])
    // Text is not a path: '~/x' scored as it is.
    const text = runCli(['score', '--model', path.join(ROOT, 'models', 'tiny-moe'), '--text', '~/x', '--threads', '1', '--json'], { cwd: dir, env })
    assert.equal(text.status, 0, text.stderr)
    // '~', '/', 'x' as the tiny model's byte-level tokenizer encodes them.
    assert.equal(JSON.parse(text.stdout.trim().split('\n').at(-1)!).tokens.length, 3)
  })
})
