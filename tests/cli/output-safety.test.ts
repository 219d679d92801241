// Outputs are never destructive (issue 14 §1) and failed commands exit (§4): every command that
// writes refuses a path it must not replace (the database folder, `.`, the project, a model folder,
// an unrelated file, a foreign folder, a path inside a model) with a clear error and the folder
// around it byte-for-byte unchanged; it replaces its own earlier output atomically; and a write that
// fails part-way (a real EFBIG from `ulimit -f`) keeps the old output and leaves no temp behind.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli, type CliResult } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const BIN = path.join(ROOT, 'bin', 'moe-harness.mjs')
const dir = tmpDir()
const work = path.join(dir, 'work') // the current folder of every command
const env = { MOE_HARNESS_HOME: path.join(dir, 'home') } // caches live outside `work`
fs.mkdirSync(path.join(work, 'db'), { recursive: true })
writeTinyCheckpoint(path.join(work, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 1, hidden: 16, ffn: 8, seed: 14 })
fs.writeFileSync(path.join(work, 'notes.txt'), 'my notes\n')
fs.mkdirSync(path.join(work, 'foreign'))
fs.writeFileSync(path.join(work, 'foreign', 'keep.txt'), 'not the harness\'s\n')
const db = path.join('db', 'results.sqlite')
const sweepConfig = {
  models: { m: 'model' }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 3 },
  calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
}
function writeConfig(name: string, outDir: string): string {
  fs.writeFileSync(path.join(work, name), `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}\n` +
    `export default defineConfig(${JSON.stringify({ ...sweepConfig, report: { outDir } })})\n`)
  return name
}

/** Every path under `root` with type, size, mtime and content hash: what "nothing changed" means. */
function snapshot(root: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (rel: string) => {
    const abs = path.join(root, rel)
    const st = fs.lstatSync(abs)
    const hash = st.isFile() ? crypto.createHash('sha256').update(fs.readFileSync(abs)).digest('hex') : st.isDirectory() ? 'dir' : 'other'
    out.set(rel || '.', `${hash} ${st.size} ${st.mtimeMs}`)
    if (st.isDirectory()) for (const f of fs.readdirSync(abs).sort()) if (!skip(path.join(rel, f))) walk(path.join(rel, f))
  }
  walk('')
  return out
}
/** `around`: the folder's own entry may differ (an output inside it was renamed in). */
function assertSame(before: Map<string, string>, after: Map<string, string>, what: string, around = false) {
  const changed = [...new Set([...before.keys(), ...after.keys()])].filter(k => before.get(k) !== after.get(k) && !(around && k === '.'))
  assert.deepEqual(changed, [], `${what} changed: ${changed.join(', ')}`)
}
const leftovers = (folder: string) => fs.readdirSync(folder).filter(f => f.includes('.moe-harness-tmp-') || f.includes('.moe-harness-old-'))

function cliAsync(args: string[]): Promise<CliResult> {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: work, env: { ...process.env, ...env } })
    let stdout = '', stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('close', code => { clearTimeout(timer); resolve({ status: code ?? -1, stdout, stderr }) })
  })
}
const cli = (args: string[]) => runCli(args, { cwd: work, env })
/** The CLI with a file-size limit (KiB): writes past it fail with a real EFBIG. */
function cliLimited(kib: number, args: string[]): CliResult {
  const r = spawnSync('bash', ['-c', `ulimit -f ${kib}; exec "$@"`, 'bash', process.execPath, BIN, ...args], { cwd: work, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120_000 })
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}
function assertRefused(r: CliResult, pattern: RegExp, what: string) {
  assert.equal(r.status, 1, `${what}: exit ${r.status}\n${r.stderr}`)
  assert.match(r.stderr, /^error \[OUTPUT_UNSAFE\]: /m, `${what}: ${r.stderr}`)
  assert.match(r.stderr, pattern, what)
  assert.match(r.stderr, /Nothing was written/, what)
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`)
}

describe('output safety', () => {
  it('builds a tiny results store', () => {
    const r = cli(['sweep', '--config', writeConfig('sweep.config.ts', 'site'), '--db', db])
    assert.equal(r.status, 0, r.stderr)
  })

  it('every writer refuses the database folder, ., the project, a model, an unrelated file, a foreign folder; nothing changes', async () => {
    const folder: [string, RegExp][] = [
      ['db', /contains the results database|non-empty folder the harness did not create/],
      ['.', /is the current folder/],
      [ROOT, /is the moe-harness project/],
      ['model', /is the model folder/],
      ['notes.txt', /is an existing file, not a folder/],
      ['foreign', /non-empty folder the harness did not create/],
    ]
    const file = (kind: RegExp): [string, RegExp][] => [
      ['db', /is a folder, not a file/],
      ['.', /is a folder, not a file/],
      [ROOT, /is a folder, not a file/],
      ['model', /is a folder \(the model folder/],
      ['notes.txt', kind],
      ['foreign', /is a folder, not a file/],
    ]
    const transform = ['transform', '--model', 'model', '--method', 'frequency-pruning', '--ratio', '0.5', '--calibration-sequences', '2', '--calibration-length', '16', '--out']
    const cases: { args: string[]; pattern: RegExp; what: string }[] = [
      ...folder.map(([t, pattern]) => ({ args: ['report', '--db', db, '--out', t], pattern: t === 'db' ? /contains the results database/ : pattern, what: `report --out ${t}` })),
      ...folder.map(([t, pattern]) => ({ args: [...transform, t], pattern, what: `transform --out ${t}` })),
      ...folder.map(([t, pattern], i) => ({ args: ['start', '--config', `start-${i}.config.ts`, '--db', db], pattern: t === 'db' ? /contains the results database/ : pattern, what: `start with report.outDir ${t}` })),
      ...file(/is not a CSV export of moe-harness/).map(([t, pattern]) => ({ args: ['export', '--db', db, '--csv', t], pattern, what: `export --csv ${t}` })),
      ...file(/is not a JSON export of moe-harness/).map(([t, pattern]) => ({ args: ['export', '--db', db, '--json', t], pattern, what: `export --json ${t}` })),
      ...file(/is not a results database of moe-harness/).map(([t, pattern]) => ({ args: ['merge', db, '--out', t], pattern, what: `merge --out ${t}` })),
      { args: ['report', '--db', db, '--out', 'model/site'], pattern: /inside the model folder/, what: 'report --out <inside a model>' },
      { args: ['export', '--db', db, '--json', 'model/out.json'], pattern: /inside the model folder/, what: 'export --json <inside a model>' },
      { args: ['export', '--db', db, '--csv', db], pattern: /is the results database/, what: 'export --csv <the database>' },
      { args: ['export', '--db', db, '--csv', 'ok.csv', '--json', 'notes.txt'], pattern: /--json notes.txt already exists/, what: 'export: both paths checked before either is written' },
    ]
    folder.forEach(([t], i) => writeConfig(`start-${i}.config.ts`, t))
    const before = snapshot(work)
    const rootFiles = fs.readdirSync(ROOT).filter(f => f.includes('.moe-harness-'))
    const pkg = fs.statSync(path.join(ROOT, 'package.json'))
    const queue = [...cases]
    const results = new Map<string, CliResult>()
    await Promise.all([0, 1, 2].map(async () => {
      for (let c = queue.shift(); c; c = queue.shift()) results.set(c.what, await cliAsync(c.args))
    }))
    for (const c of cases) assertRefused(results.get(c.what)!, c.pattern, c.what)
    assertSame(before, snapshot(work), 'the working folder')
    assert.deepEqual(fs.readdirSync(ROOT).filter(f => f.includes('.moe-harness-')), rootFiles)
    assert.deepEqual(leftovers(path.dirname(ROOT)), [])
    const pkgAfter = fs.statSync(path.join(ROOT, 'package.json'))
    assert.equal(pkgAfter.mtimeMs, pkg.mtimeMs)
  })

  it('new-method never overwrites a method or its test, and creates nothing when one exists', () => {
    // tests/methods/contract.test.ts exists, methods/contract.ts does not.
    assert.equal(fs.existsSync(path.join(ROOT, 'methods', 'contract.ts')), false)
    const test = path.join(ROOT, 'tests', 'methods', 'contract.test.ts')
    const hash = crypto.createHash('sha256').update(fs.readFileSync(test)).digest('hex')
    const r = cli(['new-method', 'contract'])
    assertRefused(r, /tests\/methods\/contract\.test\.ts already exists/, 'new-method contract')
    assert.equal(fs.existsSync(path.join(ROOT, 'methods', 'contract.ts')), false, 'the method file was not created')
    assert.equal(crypto.createHash('sha256').update(fs.readFileSync(test)).digest('hex'), hash)
    assert.deepEqual(leftovers(path.join(ROOT, 'methods')), [])
  })

  it('report replaces its own site atomically, refuses one with files it did not write, keeps it when a write fails', () => {
    const others = (rel: string) => rel === 'site' || rel.startsWith('.site.')
    const before = snapshot(work, others)
    assert.equal(cli(['report', '--db', db, '--out', 'site']).status, 0)
    const site = path.join(work, 'site')
    const first = snapshot(site)
    const inode = fs.statSync(site).ino
    const r = cli(['report', '--db', db, '--out', 'site'])
    assert.equal(r.status, 0, r.stderr)
    assert.notEqual(fs.statSync(site).ino, inode, 'a new folder was swapped in')
    const second = snapshot(site)
    assert.deepEqual([...second.keys()], [...first.keys()])
    for (const [k, v] of second) if (k !== '.') assert.equal(v.split(' ')[0], first.get(k)!.split(' ')[0], `${k} is rendered identically`)
    const marker = JSON.parse(fs.readFileSync(path.join(site, '.moe-harness-output.json'), 'utf8'))
    assert.equal(marker.kind, 'report')
    assert.ok(marker.files.includes('index.html') && marker.files.includes('leaderboard.json'))

    // A file the user put into the site is not ours to delete.
    fs.writeFileSync(path.join(site, 'mine.txt'), 'mine\n')
    const withMine = snapshot(site)
    assertRefused(cli(['report', '--db', db, '--out', 'site']), /holds files moe-harness did not write \(mine\.txt\)/, 'report over a site with a user file')
    assertSame(withMine, snapshot(site), 'the site')
    fs.rmSync(path.join(site, 'mine.txt'))

    // A page larger than the file-size limit fails the write part-way: the old site stays, no temp.
    const old = snapshot(site)
    const limited = cliLimited(12, ['report', '--db', db, '--out', 'site'])
    assert.equal(limited.status, 1, limited.stderr)
    assert.match(limited.stderr, /error \[OUTPUT_FAILED\]: Could not write --out site: EFBIG.*previous output .* unchanged/)
    assertSame(old, snapshot(site), 'the old site')
    assert.deepEqual(leftovers(work), [])

    // A temp left by a killed writer (its pid is gone) is cleaned up by the next write.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!
    const host = crypto.createHash('sha256').update(os.hostname()).digest('hex').slice(0, 6)
    const stale = path.join(work, `.site.moe-harness-tmp-${host}-${dead}-deadbeef`)
    fs.mkdirSync(stale)
    fs.writeFileSync(path.join(stale, 'index.html'), 'half')
    // ... and so is a writer killed between its two renames: the old site set aside, the new not yet in.
    fs.renameSync(site, path.join(work, `.site.moe-harness-old-${host}-${dead}-cafe0123`))
    // A live writer's temp (this test's pid) is left alone.
    const live = path.join(work, `.site.moe-harness-tmp-${host}-${process.pid}-0badf00d`)
    fs.mkdirSync(live)
    assert.equal(cli(['report', '--db', db, '--out', 'site']).status, 0)
    assert.deepEqual(leftovers(work), [path.basename(live)])
    fs.rmSync(live, { recursive: true })
    assert.ok(fs.existsSync(path.join(site, 'index.html')))
    assertSame(before, snapshot(work, others), 'everything but the site', true)
  })

  it('export replaces only its own CSV/JSON, atomically, and keeps them when a write fails', () => {
    const before = snapshot(work, rel => /^out\./.test(rel) || rel.startsWith('.out.'))
    for (let i = 0; i < 2; i++) {
      const r = cli(['export', '--db', db, '--csv', 'out.csv', '--json', 'out.json'])
      assert.equal(r.status, 0, r.stderr)
    }
    const lines = fs.readFileSync(path.join(work, 'out.csv'), 'utf8').trim().split('\n')
    assert.equal(lines[0], 'model,model_id,method,params,ratio,achieved_ratio,variant_id,task,task_version,subset,metric,value,stderr,docs,status,error,device,ort_version,scoring_key,data_sha256')
    const rows = JSON.parse(fs.readFileSync(path.join(work, 'out.json'), 'utf8'))
    assert.equal(rows.length, lines.length - 1)
    assert.ok(rows.length > 0 && rows.every((x: { task: string }) => x.task === 'brown-cloze'))
    // A CSV where the JSON goes (and vice versa) is not recognised as that export.
    assertRefused(cli(['export', '--db', db, '--json', 'out.csv']), /is not a JSON export/, 'export --json over our CSV')
    const csv = fs.readFileSync(path.join(work, 'out.csv'))
    const limited = cliLimited(0, ['export', '--db', db, '--csv', 'out.csv'])
    assert.equal(limited.status, 1, limited.stderr)
    assert.match(limited.stderr, /error \[OUTPUT_FAILED\]: Could not write --csv out\.csv: EFBIG/)
    assert.deepEqual(fs.readFileSync(path.join(work, 'out.csv')), csv)
    assert.deepEqual(leftovers(work), [])
    assertSame(before, snapshot(work, rel => /^out\./.test(rel) || rel.startsWith('.out.')), 'everything but the exports', true)
  })

  it('merge builds a new store beside its target, extends its own, and leaves nothing when it fails', () => {
    const r = cli(['merge', db, '--out', 'merged.sqlite'])
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /1 runs merged, 0 already present/)
    const again = cli(['merge', db, '--out', 'merged.sqlite'])
    assert.equal(again.status, 0, again.stderr)
    assert.match(again.stdout, /0 runs merged, 1 already present/)
    const limited = cliLimited(0, ['merge', db, '--out', 'merged2.sqlite'])
    assert.notEqual(limited.status, 0)
    assert.match(limited.stderr, /merged2\.sqlite/)
    assert.doesNotMatch(limited.stderr, /moe-harness-tmp|\n\s+at /)
    assert.equal(fs.existsSync(path.join(work, 'merged2.sqlite')), false)
    assert.deepEqual(leftovers(work), [])
  })

  it('transform replaces its own output and a report may not replace a transformed model', () => {
    const args = ['transform', '--model', 'model', '--method', 'frequency-pruning', '--ratio', '0.5', '--calibration-sequences', '2', '--calibration-length', '16', '--out', 'pruned']
    assert.equal(cli(args).status, 0)
    const r = cli(args)
    assert.equal(r.status, 0, r.stderr)
    const marker = JSON.parse(fs.readFileSync(path.join(work, 'pruned', '.moe-harness-output.json'), 'utf8'))
    assert.equal(marker.kind, 'transform')
    assert.ok(marker.files.includes('config.json'))
    const model = snapshot(path.join(work, 'pruned'))
    assertRefused(cli(['report', '--db', db, '--out', 'pruned']), /holds a transform output of moe-harness, not a report output/, 'report over a transformed model')
    assertSame(model, snapshot(path.join(work, 'pruned')), 'the transformed model')
    // The calibration is cached by now, so the first file the limit stops is the model's own.
    const limited = cliLimited(0, args)
    assert.equal(limited.status, 1, limited.stderr)
    assert.match(limited.stderr, /error \[OUTPUT_FAILED\]: Could not write --out pruned: EFBIG/)
    assertSame(model, snapshot(path.join(work, 'pruned')), 'the transformed model after a failed rewrite')
    assert.deepEqual(leftovers(work), [])
  })

  it('start writes its site through the same rule', () => {
    const r = cli(['start', '--config', writeConfig('start-ok.config.ts', 'board'), '--db', db])
    assert.equal(r.status, 0, r.stderr)
    assert.ok(fs.existsSync(path.join(work, 'board', 'index.html')))
    assert.equal(JSON.parse(fs.readFileSync(path.join(work, 'board', '.moe-harness-output.json'), 'utf8')).kind, 'report')
  })

  it('eval exits after its error while a progress bar is running', () => {
    // The error is raised inside the task's evaluation, after its bar has started.
    const t0 = performance.now()
    const r = runCli(['eval', '--model', 'model', '--tasks', 'brown-cloze', '--limit', '3', '--max-length', '1'], { cwd: work, env, timeoutMs: 60_000 })
    assert.equal(r.status, 1, `exit ${r.status} after ${((performance.now() - t0) / 1000).toFixed(1)} s (-1: killed by the timeout, i.e. it hung)\n${r.stderr}`)
    assert.match(r.stderr, /error \[SEQUENCE_TOO_LONG\]/)
  })
})
