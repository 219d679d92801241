// MOE_HARNESS_HOME values a user can set by accident: an empty one (`export MOE_HARNESS_HOME=` or an
// unset variable in `MOE_HARNESS_HOME=$SCRATCH/h`) counts as unset, like the other MOE_HARNESS_*
// variables (it had made the current folder the home: graphs/ appeared in the project), and a home
// under /proc stops with CONFIG_INVALID (Node's recursive mkdir spun there forever, no output).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
const model = path.join(dir, 'model')
writeTinyCheckpoint(model, { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 5 })

describe('MOE_HARNESS_HOME', () => {
  it('empty: scores as when unset and writes nothing into the current folder', () => {
    const cwd = path.join(dir, 'project')
    fs.mkdirSync(cwd)
    const empty = runCli(['score', '--model', model, '--ids', '1,2,3,4', '--json'], { cwd, env: { MOE_HARNESS_HOME: '' } })
    assert.equal(empty.status, 0, empty.stderr)
    assert.deepEqual(fs.readdirSync(cwd), [])
    const unset = runCli(['score', '--model', model, '--ids', '1,2,3,4', '--json'], { cwd, env: { MOE_HARNESS_HOME: undefined as unknown as string } })
    assert.equal(unset.status, 0, unset.stderr)
    assert.deepEqual(JSON.parse(empty.stdout.trim().split('\n').pop()!).logprobs, JSON.parse(unset.stdout.trim().split('\n').pop()!).logprobs)
  })

  it('moe-harness --help lists every MOE_HARNESS_* variable the code reads (developer aids MOE_HARNESS_ORT_* aside)', () => {
    const names = new Set<string>()
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name))
        else if (e.name.endsWith('.ts')) for (const m of fs.readFileSync(path.join(d, e.name), 'utf8').matchAll(/process\.env\.(MOE_HARNESS_[A-Z_]+)/g)) names.add(m[1])
      }
    }
    walk(path.join(ROOT, 'src'))
    const used = [...names].filter(n => !n.startsWith('MOE_HARNESS_ORT_')).sort()
    assert.ok(used.length >= 5, used.join(' '))
    const help = runCli(['--help'])
    assert.equal(help.status, 0, help.stderr)
    for (const name of used) assert.match(help.stdout, new RegExp(`^  ${name} `, 'm'), `${name} is read by src/ but not in moe-harness --help`)
  })

  it('under /proc: CONFIG_INVALID naming the variable, at once', () => {
    const r = runCli(['score', '--model', model, '--ids', '1,2,3'], { env: { MOE_HARNESS_HOME: '/proc/moe-harness-home' }, timeoutMs: 60_000 })
    assert.equal(r.status, 1, `status ${r.status} (a hang is -1): ${r.stderr}`)
    assert.match(r.stderr, /error \[CONFIG_INVALID\]: MOE_HARNESS_HOME is \/proc\/moe-harness-home, inside \/proc/)
  })
})
