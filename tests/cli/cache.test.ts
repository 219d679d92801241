// `moe-harness cache` on a harness home filled by a real sweep of two tiny models: list sizes match
// `du` (hard links once), a dry run removes nothing, --yes removes exactly the selection, foreign files
// and folders of live processes / leased variants stay, and a removed variant is rebuilt with the same scores.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { before, describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { lastJson, runCli, runCliAsync, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const DAY = 86_400_000

/** Bytes on disk as du counts them (hard links once across the arguments). */
function du(...paths: string[]): number {
  const r = spawnSync('du', ['-s', '-B1', '-c', ...paths], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return Number(r.stdout.trim().split('\n').pop()!.split('\t')[0])
}

/** Every path under `dir` with its inode, and a file's size and mtime: what a dry run must leave exactly as it was. */
function snapshot(dir: string): string[] {
  const out: string[] = []
  const walk = (p: string) => {
    const st = fs.lstatSync(p)
    out.push(`${path.relative(dir, p)} ${st.ino}${st.isDirectory() ? '' : ` ${st.size} ${st.mtimeMs}`}`)
    if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) walk(path.join(p, n))
  }
  walk(dir)
  return out
}

/** A pid that no longer runs. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0'])
  return r.pid!
}

function backdate(file: string, ms: number): void {
  const t = new Date(Date.now() - ms)
  fs.utimesSync(file, t, t)
}

describe('moe-harness cache', () => {
  const dir = tmpDir()
  const home = path.join(dir, 'home')
  const env = { MOE_HARNESS_HOME: home }
  const variantsDir = path.join(home, 'variants')
  const config = path.join(dir, 'c.config.ts')
  const cache = (...args: string[]) => runCli(['cache', ...args], { env, cwd: dir })
  const folders: Record<string, string> = {} // 'm frequency-pruning' -> folder name
  let liveSpill = ''
  let deadStaging = ''
  let deadSpill = ''
  let deadAside = ''
  const foreign = ['notes.txt', 'variants/my-backup', 'graphs/README', 'calibration/mine.v8']

  before(() => {
    writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 97 })
    writeTinyCheckpoint(path.join(dir, 'm2'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 98 })
    const body = { models: { m: 'm', m2: 'm2' }, methods: ['frequency-pruning', 'magnitude-pruning'], ratios: [0.5], tasks: ['brown-cloze'], subset: { limit: 3 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 } }
    writeSweepConfig(config, body)
    const sweep = runCli(['sweep', '--config', config, '--db', path.join(home, 'results.sqlite'), '--json'], { env, cwd: dir })
    assert.equal(sweep.status, 0, sweep.stderr)
    assert.equal(lastJson(sweep.stdout).completed, 4)
    // Which folder is which, from the store the sweep wrote (folder = 16 hex of the model id - content hash).
    const store = new ResultsStore(path.join(home, 'results.sqlite'), { readonly: true })
    for (const m of store.storedModels()) {
      for (const v of store.storedVariants(m.id)) if (v.status === 'ready') folders[`${m.name} ${v.method}`] = `${m.id.slice(0, 16)}-${v.contentHash}`
    }
    store.close()
    assert.equal(Object.keys(folders).length, 4)
    for (const f of Object.values(folders)) assert.ok(fs.existsSync(path.join(variantsDir, f, 'edits.json')), f)
    // m's variants were last used two days ago, m2's an hour ago.
    for (const [label, f] of Object.entries(folders)) backdate(path.join(variantsDir, f, 'edits.json'), label.startsWith('m2 ') ? 3600_000 : 2 * DAY)
    for (const g of fs.readdirSync(path.join(home, 'graphs'))) {
      if (/^[0-9a-f]{32}$/.test(g)) backdate(path.join(home, 'graphs', g, 'manifest.json'), 2 * DAY)
    }
    // Things the harness did not write, and leftovers of processes dead and alive.
    fs.writeFileSync(path.join(home, 'notes.txt'), 'mine\n')
    fs.mkdirSync(path.join(variantsDir, 'my-backup'))
    fs.writeFileSync(path.join(variantsDir, 'my-backup', 'edits.json'), '{}')
    fs.writeFileSync(path.join(home, 'graphs', 'README'), 'mine\n')
    fs.writeFileSync(path.join(home, 'calibration', 'mine.v8'), 'mine\n')
    deadStaging = `${folders['m frequency-pruning']}.staged-${os.hostname()}-${deadPid()}-abcdef`
    fs.mkdirSync(path.join(variantsDir, deadStaging))
    fs.writeFileSync(path.join(variantsDir, deadStaging, 'edits.json'), '{}')
    // A variant folder set aside by a prune (or publish) that died before deleting it.
    deadAside = `${folders['m2 frequency-pruning']}.old-${os.hostname()}-${deadPid()}-123abc`
    fs.mkdirSync(path.join(variantsDir, deadAside))
    fs.writeFileSync(path.join(variantsDir, deadAside, 'edits.json'), '{}')
    deadSpill = `.spill-${os.hostname()}-${deadPid()}-0a0b0c`
    fs.mkdirSync(path.join(variantsDir, deadSpill))
    fs.writeFileSync(path.join(variantsDir, deadSpill, 'overrides-0.safetensors'), Buffer.alloc(10_000, 1))
    // A live process's spill folder holding a hard link to m's magnitude-pruning overrides (as a publish leaves them).
    liveSpill = `.spill-${os.hostname()}-${process.pid}-0d0e0f`
    fs.mkdirSync(path.join(variantsDir, liveSpill))
    fs.linkSync(path.join(variantsDir, folders['m magnitude-pruning']!, 'overrides.safetensors'), path.join(variantsDir, liveSpill, 'overrides-0.safetensors'))
  })

  it('lists every variant folder with its model, recorded variant, size (as du) and state; totals count hard links once', () => {
    const r = cache('--json')
    assert.equal(r.status, 0, r.stderr)
    const list = lastJson(r.stdout)
    assert.equal(list.home, home)
    assert.equal(list.totalBytes, du(home))
    const variants = list.areas.variants.items.filter((e: any) => e.kind === 'variant')
    assert.equal(list.areas.variants.entries, 4)
    assert.deepEqual(variants.map((e: any) => path.basename(e.path)).sort(), Object.values(folders).sort())
    for (const [label, f] of Object.entries(folders)) {
      const [model, method] = label.split(' ')
      const e = variants.find((v: any) => v.path.endsWith(f))
      assert.equal(e.state, 'ok')
      assert.equal(e.bytes, du(path.join(variantsDir, f)), `${label} size`)
      assert.equal(e.variant.modelDir, path.join(dir, model!))
      assert.deepEqual(e.variant.recordedAs, [`${model}: ${method} ratio 0.5`])
      const age = Date.now() - Date.parse(e.lastUsed)
      assert.ok(model === 'm2' ? age >= 3600_000 && age < 2 * 3600_000 : age >= 2 * DAY && age < 2 * DAY + 3600_000, `${label} last used ${e.lastUsed}`)
    }
    assert.match(variants.find((v: any) => v.path.endsWith(folders['m magnitude-pruning']!)).variant.edits, /^\d+ tensors replaced$/)
    assert.equal(variants.find((v: any) => v.path.endsWith(folders['m frequency-pruning']!)).variant.edits, '4 experts removed in 2 layers')
    // Area sizes: every inode once (the hard-linked overrides file is in the variant folder and the spill).
    const areaPaths = (area: string) => list.areas[area].items.map((e: any) => e.path)
    assert.equal(list.areas.variants.bytes, du(...areaPaths('variants')))
    assert.equal(list.areas.graphs.entries, fs.readdirSync(path.join(home, 'graphs')).filter(g => /^[0-9a-f]{32}$/.test(g)).length)
    assert.ok(list.areas.graphs.entries >= 2)
    assert.equal(list.areas.graphs.bytes, du(...areaPaths('graphs')))
    assert.equal(list.areas.calibration.entries, 2, 'one calibration per model')
    assert.equal(list.areas.calibration.bytes, du(...areaPaths('calibration')))
    const byName = (name: string) => list.areas.variants.items.find((e: any) => e.name === `variants/${name}`)
    assert.equal(byName(deadStaging).state, 'leftover')
    assert.equal(byName(deadAside).state, 'leftover')
    assert.equal(byName(deadAside).kind, 'staging')
    assert.equal(byName(deadSpill).state, 'leftover')
    assert.equal(byName(liveSpill).state, 'live')
    assert.deepEqual(list.foreign.map((e: any) => e.name).sort(), [...foreign].sort())
    assert.deepEqual(list.stores.map((e: any) => e.name), ['results.sqlite'])

    const text = cache()
    assert.equal(text.status, 0, text.stderr)
    assert.match(text.stdout, /variants: 4 folders, /)
    assert.match(text.stdout, /m2: magnitude-pruning ratio 0\.5/)
    assert.match(text.stdout, /not ours, kept: .*notes\.txt/)
    assert.match(text.stdout, /total \d+(\.\d+)? (kB|MB)/)
  })

  it('a dry run lists the selection and the bytes it frees, and changes nothing', () => {
    const before = snapshot(home)
    const r = cache('prune', '--variants', '--older-than', '1d', '--json')
    assert.equal(r.status, 0, r.stderr)
    const plan = lastJson(r.stdout)
    assert.equal(plan.dryRun, true)
    // m's two variants (unused for two days) and the dead leftovers; m2's (an hour) and the live spill stay.
    const expected = [`variants/${folders['m frequency-pruning']}`, `variants/${folders['m magnitude-pruning']}`, `variants/${deadStaging}`, `variants/${deadAside}`, `variants/${deadSpill}`]
    assert.deepEqual(plan.selected.map((e: any) => e.name).sort(), expected.sort())
    assert.deepEqual(plan.kept, [], 'the live spill folder is not older than a day: not even a candidate')
    // Freed: the selection's bytes, less the overrides file the live spill folder still links.
    const linked = du(path.join(variantsDir, liveSpill, 'overrides-0.safetensors'))
    assert.ok(linked > 0)
    assert.equal(plan.selectedBytes, du(...expected.map(n => path.join(home, n))) - linked)
    assert.deepEqual(plan.removed, [])
    assert.deepEqual(plan.foreign.map((e: any) => e.name).sort(), [...foreign].sort())
    assert.deepEqual(snapshot(home), before, 'a dry run changes nothing')
    const text = cache('prune', '--variants', '--older-than', '1d')
    assert.match(text.stdout, /^dry run: would remove 5 entries of .*, freeing .* \(pass --yes to remove them\):/)
    assert.match(text.stdout, /prepared again when a sweep needs it/)
    assert.deepEqual(snapshot(home), before)
  })

  it('keeps the variants a --keep-store records, and leaves every area alone that was not chosen', () => {
    const r = cache('prune', '--all', '--keep-store', path.join(home, 'results.sqlite'), '--json')
    assert.equal(r.status, 0, r.stderr)
    const plan = lastJson(r.stdout)
    const selected = plan.selected.map((e: any) => e.name)
    for (const f of Object.values(folders)) assert.ok(!selected.includes(`variants/${f}`), f)
    assert.equal(plan.kept.filter((e: any) => e.reason.includes('--keep-store')).length, 4)
    assert.ok(selected.some((n: string) => n.startsWith('calibration/')))
    assert.equal(selected.filter((n: string) => /^graphs\/[0-9a-f]{32}$/.test(n)).length, fs.readdirSync(path.join(home, 'graphs')).filter(g => /^[0-9a-f]{32}$/.test(g)).length)
    const calibrationOnly = lastJson(cache('prune', '--calibration', '--json').stdout)
    assert.deepEqual(calibrationOnly.selected.map((e: any) => e.area), ['calibration', 'calibration'])
  })

  it('bad arguments are errors with stable codes; a missing home is nothing cached', () => {
    const bad = cache('prune', '--variants', '--older-than', '7 days')
    assert.equal(bad.status, 1)
    assert.match(bad.stderr, /^error \[INVALID_ARGUMENT\]: --older-than '7 days' is not a duration; .*s \(seconds\), m \(minutes\), h \(hours\), d \(days\) or w \(weeks\)/)
    const noArea = cache('prune', '--older-than', '7d')
    assert.equal(noArea.status, 1)
    assert.match(noArea.stderr, /^error \[INVALID_ARGUMENT\]: --older-than 7d needs an area: add --variants/)
    const none = runCli(['cache'], { env: { MOE_HARNESS_HOME: path.join(dir, 'no-home') }, cwd: dir })
    assert.equal(none.status, 0, none.stderr)
    assert.match(none.stdout, /No harness home at .*no-home .*nothing is cached/)
    assert.equal(fs.existsSync(path.join(dir, 'no-home')), false, 'listing creates nothing')
  })

  it('--yes removes exactly the selection (a leased variant and live folders stay), and a sweep rebuilds the removed variants with the same scores', () => {
    // A running sweep holds a lease on m's frequency-pruning variant: prune must keep its folder.
    const store = new ResultsStore(path.join(home, 'results.sqlite'))
    const mId = store.storedModels().find(m => m.name === 'm')!.id
    const leased = folders['m frequency-pruning']!
    const key = { model_id: mId, content_hash: leased.split('-')[1]!, task: 'brown-cloze', task_version: 99, subset: 'x', scoring_key: 'x', data_sha256: 'x' }
    assert.equal(store.claimCell(key, `${os.hostname()}:${process.pid}:test`, 600_000, new Date().toISOString()), 'claimed')
    // Closed while pruning: a store a running process keeps open for writing protects all its variants
    // (tests/cli/cache-running-sweep.test.ts); here only the lease does.
    store.close()
    // The store is written by this test itself (the lease): compared apart.
    const outsideStore = (lines: string[]) => lines.filter(l => !l.startsWith('results.sqlite'))
    const before = outsideStore(snapshot(home))
    // The sweeps' by-id index entries naming a folder (variants/by-id/<id>.json) go with it.
    const byId = path.join(variantsDir, 'by-id')
    const entriesOf = (folder: string) => fs.readdirSync(byId).filter(f => f.endsWith('.json') && JSON.parse(fs.readFileSync(path.join(byId, f), 'utf8')).folder === folder).map(f => `variants/by-id/${f}`)
    const goneEntries = [folders['m magnitude-pruning'], folders['m2 frequency-pruning'], folders['m2 magnitude-pruning']].flatMap(f => entriesOf(f!))
    let r
    try {
      r = cache('prune', '--variants', '--yes', '--json')
    } finally {
      const again = new ResultsStore(path.join(home, 'results.sqlite'))
      again.releaseCell(key, `${os.hostname()}:${process.pid}:test`)
      again.close()
    }
    assert.equal(r.status, 0, r.stderr)
    const result = lastJson(r.stdout)
    const removedNames = result.removed.map((e: any) => e.name).sort()
    const goneFolders = [folders['m magnitude-pruning'], folders['m2 frequency-pruning'], folders['m2 magnitude-pruning'], deadStaging, deadAside, deadSpill].map(n => `variants/${n}`)
    assert.deepEqual(removedNames, [...goneFolders].sort())
    assert.ok(result.kept.some((e: any) => e.name === `variants/${leased}` && /in use by the sweep .*:test/.test(e.reason)), JSON.stringify(result.kept))
    assert.ok(result.kept.some((e: any) => e.name === `variants/${liveSpill}` && /running process/.test(e.reason)), JSON.stringify(result.kept))
    assert.ok(result.freedBytes > 0)
    // Exactly those are gone: everything else (other areas, foreign files, the live spill, the leased folder) is as it was.
    const remaining = outsideStore(snapshot(home))
    const gone = [...goneFolders, ...goneEntries]
    assert.ok(goneEntries.length >= 3, 'the removed variants had index entries')
    assert.deepEqual(remaining, before.filter(line => !gone.some(g => line === g || line.startsWith(`${g}/`) || line.startsWith(`${g} `))))
    for (const f of foreign) assert.ok(fs.existsSync(path.join(home, f)), f)
    assert.ok(fs.existsSync(path.join(variantsDir, liveSpill, 'overrides-0.safetensors')))
    assert.deepEqual(fs.readdirSync(variantsDir).filter(n => n.includes('.old-')), [], 'no set-aside folder left')

    // A fresh store makes the sweep prepare every variant again: the removed folders come back, same scores.
    const rerun = runCli(['sweep', '--config', config, '--db', path.join(dir, 'b.sqlite'), '--json'], { env, cwd: dir })
    assert.equal(rerun.status, 0, rerun.stderr)
    assert.equal(lastJson(rerun.stdout).completed, 4)
    for (const f of Object.values(folders)) assert.ok(fs.existsSync(path.join(variantsDir, f, 'edits.json')), `${f} rebuilt`)
    const rows = (db: string) => {
      const out = path.join(dir, `${path.basename(db)}.json`)
      const x = runCli(['export', '--db', db, '--json', out], { env, cwd: dir })
      assert.equal(x.status, 0, x.stderr)
      return (JSON.parse(fs.readFileSync(out, 'utf8')) as any[]).map(row => `${row.model} ${row.method} ${row.ratio} ${row.task} ${row.metric} ${row.value}`).sort()
    }
    const a = rows(path.join(home, 'results.sqlite'))
    assert.ok(a.length >= 4)
    assert.deepEqual(rows(path.join(dir, 'b.sqlite')), a)

    // Just rebuilt (used within the minute): a prune keeps them, saying why.
    const fresh = lastJson(cache('prune', '--variants', '--json').stdout)
    assert.deepEqual(fresh.selected, [])
    assert.ok(fresh.kept.some((e: any) => e.name === `variants/${folders['m2 magnitude-pruning']}` && /used in the last 60 s/.test(e.reason)))
  })

  it('--model selects one model\'s variants; a damaged folder is a leftover that a plain prune removes', () => {
    for (const f of Object.values(folders)) backdate(path.join(variantsDir, f, 'edits.json'), DAY)
    const r = cache('prune', '--model', path.join(dir, 'm2'), '--json')
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(lastJson(r.stdout).selected.map((e: any) => e.name).sort(), [folders['m2 frequency-pruning'], folders['m2 magnitude-pruning']].map(n => `variants/${n}`).sort())
    const damaged = path.join(variantsDir, folders['m frequency-pruning']!, 'edits.json')
    fs.writeFileSync(damaged, '{"trunc')
    const list = lastJson(cache('list', '--json').stdout)
    const entry = list.areas.variants.items.find((e: any) => e.name === `variants/${folders['m frequency-pruning']}`)
    assert.equal(entry.state, 'damaged')
    assert.match(entry.note, /is damaged/)
    const plain = cache('prune', '--yes', '--json')
    assert.equal(plain.status, 0, plain.stderr)
    assert.deepEqual(lastJson(plain.stdout).removed.map((e: any) => e.name), [`variants/${folders['m frequency-pruning']}`])
    assert.equal(fs.existsSync(path.dirname(damaged)), false)
    assert.ok(fs.existsSync(path.join(variantsDir, folders['m magnitude-pruning']!, 'edits.json')))
  })

  it('an entry that cannot be removed is FILE_ACCESS naming it, after removing what it can (run as another user)', { skip: process.getuid?.() !== 0 && 'needs root to run the CLI as nobody' }, async () => {
    fs.chmodSync(dir, 0o755) // nobody may read the home (mkdtemp made it private), not write it
    const files = fs.readdirSync(path.join(home, 'calibration')).filter(f => f.endsWith('.v8') && f !== 'mine.v8').sort()
    assert.equal(files.length, 2)
    // One entry nobody may remove (its folder is nobody's), sorted after the two it may not: the removal goes on past them.
    const sequential = path.join(home, 'calibration', 'sequential')
    fs.mkdirSync(sequential)
    const removable = path.join(sequential, `${'ab'.repeat(16)}.v8`)
    fs.writeFileSync(removable, 'x')
    fs.chownSync(sequential, 65534, 65534)
    const r = await runCliAsync(['cache', 'prune', '--calibration', '--yes'], { env, cwd: dir, uid: 65534, gid: 65534, timeoutMs: 120_000 })
    assert.equal(r.status, 1, r.stderr)
    assert.equal(fs.existsSync(removable), false)
    assert.match(r.stderr, new RegExp(`^error \\[FILE_ACCESS\\]: Cannot remove ${path.join(home, 'calibration', files[0]!).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} .*permission denied.* \\(and 1 more entry could not be removed\\)`))
    assert.match(r.stdout, new RegExp(`^removed 1 entry of .*\n  .* calibration/sequential/${'ab'.repeat(16)}\\.v8\ncould not remove:\n  calibration/${files[0]}\n  calibration/${files[1]}\n`))
    for (const f of files) assert.ok(fs.existsSync(path.join(home, 'calibration', f)), f)
  })
})
