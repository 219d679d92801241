// A calibration cache entry is used only under the key it was computed for: a file copied between
// models (or settings) must be recomputed, not handed to another model's method. Nor is one used
// whose bytes changed on disk (a flipped bit in a Float32Array still deserializes), while an intact
// one, or one written before files carried a checksum, is reused: recomputing costs hours at real size.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import v8 from 'node:v8'
import ts from 'typescript'
import { calibrationKey, getCalibrationStats } from '../../src/calibration/cache.ts'
import { sequentialStats } from '../../src/calibration/sequential.ts'
import { openCheckpoint, type Checkpoint } from '../../src/model/checkpoint.ts'
import { startMethod } from '../../src/methods/applyMethod.ts'
import { loadMethod, needsOf, resolveParams } from '../../src/methods/registry.ts'
import { scanHome } from '../../src/cache/homeScan.ts'
import { unwritableReason } from '../../src/util/unwritableFolder.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const calibration = { source: 'builtin', sequences: 2, length: 16, seed: 5 }
const engine = { device: 'cpu' as const, threads: 1 }

describe('the calibration cache', () => {
  it('recomputes an entry whose recorded key is not its file name, with a warning', async () => {
    const dir = tmpDir()
    const shape = { family: 'mixtral' as const, experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16 }
    writeTinyCheckpoint(path.join(dir, 'a'), { ...shape, seed: 11 })
    writeTinyCheckpoint(path.join(dir, 'b'), { ...shape, seed: 12 })
    const a = openCheckpoint(path.join(dir, 'a')), b = openCheckpoint(path.join(dir, 'b'))
    const cacheDir = path.join(dir, 'home')
    const fileOf = async (c: typeof a) => path.join(cacheDir, 'calibration', `${await calibrationKey(c, calibration)}.v8`)
    const ofA = await getCalibrationStats(a, calibration, ['routing'], { ...engine, cacheDir })
    const ofB = await getCalibrationStats(b, calibration, ['routing'], { ...engine, cacheDir })
    assert.notDeepEqual(ofA.data.routing![0]!.count, ofB.data.routing![0]!.count, 'two seeds route differently')
    fs.copyFileSync(await fileOf(a), await fileOf(b))
    const warnings: string[] = []
    const write = process.stderr.write.bind(process.stderr)
    process.stderr.write = ((chunk: string) => (warnings.push(String(chunk)), true)) as typeof process.stderr.write
    let again
    try {
      again = await getCalibrationStats(b, calibration, ['routing'], { ...engine, cacheDir })
    } finally {
      process.stderr.write = write
    }
    assert.equal(again.fromCache, false)
    assert.deepEqual(again.data.routing![0]!.count, ofB.data.routing![0]!.count)
    assert.match(warnings.join(''), new RegExp(`damaged calibration cache .*holds the statistics of key ${ofA.key}, not ${ofB.key}`))
    // The recomputed entry replaced the foreign one and is used from now on.
    assert.equal((await getCalibrationStats(b, calibration, ['routing'], { ...engine, cacheDir })).fromCache, true)
  })
})

/** Runs `fn` with stderr captured; returns its result and what it wrote there. */
async function withStderr<T>(fn: () => Promise<T>): Promise<{ result: T; stderr: string }> {
  const chunks: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string) => (chunks.push(String(chunk)), true)) as typeof process.stderr.write
  try {
    return { result: await fn(), stderr: chunks.join('') }
  } finally {
    process.stderr.write = write
  }
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

describe('the calibration cache checks its files\' bytes', () => {
  const dir = tmpDir()
  const ckpt = openCheckpoint(writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 21 }).dir)
  // layerSamples: Float32Arrays, whose every bit pattern deserializes.
  const needs = ['routing', 'layerSamples'] as const
  const fresh = async (cacheDir: string) => getCalibrationStats(ckpt, calibration, needs, { ...engine, cacheDir })
  const entry = async (cacheDir: string) => path.join(cacheDir, 'calibration', `${await calibrationKey(ckpt, calibration)}.v8`)
  const statistics = (r: Awaited<ReturnType<typeof fresh>>) => ({ routing: r.data.routing, layerSamples: r.data.layerSamples })

  it('reuses an intact entry', async () => {
    const cacheDir = path.join(dir, 'intact')
    const first = await fresh(cacheDir)
    assert.equal(first.fromCache, false)
    const { result: again, stderr } = await withStderr(() => fresh(cacheDir))
    assert.equal(again.fromCache, true)
    assert.equal(stderr, '')
    assert.deepEqual(statistics(again), statistics(first))
  })

  it('recomputes an entry with one flipped bit in the middle of a Float32Array, with a warning, giving a fresh run\'s statistics', async () => {
    const cacheDir = path.join(dir, 'flipped')
    const first = await fresh(cacheDir)
    const file = await entry(cacheDir)
    const bytes = fs.readFileSync(file)
    const inputs = first.data.layerSamples![1]!.inputs
    const at = bytes.indexOf(Buffer.from(inputs.buffer, inputs.byteOffset, inputs.byteLength))
    assert.ok(at > 0 && at + inputs.byteLength < bytes.length, 'the layer-1 sample inputs are stored as they are')
    // A mantissa bit of a float in the middle: the file still deserializes to statistics of this key.
    bytes[at + 4 * Math.floor(inputs.length / 2)] ^= 0x10
    fs.writeFileSync(file, bytes)
    const { result: again, stderr } = await withStderr(() => fresh(cacheDir))
    assert.match(stderr, new RegExp(`^warning: damaged calibration cache ${escape(file)} \\(its bytes changed since it was written.*; recomputing it\\n$`))
    assert.equal(again.fromCache, false)
    assert.deepEqual(statistics(again), statistics(first))
    // The recomputed entry replaced the damaged one and is used from now on.
    const third = await withStderr(() => fresh(cacheDir))
    assert.equal(third.result.fromCache, true)
    assert.equal(third.stderr, '')
    assert.deepEqual(statistics(third.result), statistics(first))
  })

  it('recomputes a truncated entry (cut in its payload, or in its header), with a warning', async () => {
    const cacheDir = path.join(dir, 'truncated')
    const first = await fresh(cacheDir)
    const file = await entry(cacheDir)
    for (const [keep, why] of [[(n: number) => Math.floor(n / 2), 'truncated: \\d+ bytes of statistics where its header records \\d+'], [() => 20, 'truncated: 20 bytes, fewer than its 64-byte header']] as const) {
      fs.truncateSync(file, keep(fs.statSync(file).size))
      const { result: again, stderr } = await withStderr(() => fresh(cacheDir))
      assert.match(stderr, new RegExp(`^warning: damaged calibration cache ${escape(file)} \\(${why}\\); recomputing it\\n$`))
      assert.equal(again.fromCache, false)
      assert.deepEqual(statistics(again), statistics(first))
    }
    assert.equal((await fresh(cacheDir)).fromCache, true)
  })

  it('uses an entry written before files carried a checksum once as it is, and stores it again with one', async () => {
    const cacheDir = path.join(dir, 'legacy')
    const first = await fresh(cacheDir)
    const file = await entry(cacheDir)
    // What earlier versions wrote: v8.serialize of the statistics, no header.
    fs.writeFileSync(file, v8.serialize(first.data))
    const { result: again, stderr } = await withStderr(() => fresh(cacheDir))
    assert.equal(again.fromCache, true)
    assert.deepEqual(statistics(again), statistics(first))
    assert.match(stderr, new RegExp(`^note: calibration cache ${escape(file)} was written by an earlier harness without a checksum; it is used as before and stored again with one`))
    assert.equal(fs.readFileSync(file).subarray(0, 8).toString('latin1'), 'MOECALIB')
    // From now on damage to it is caught.
    const bytes = fs.readFileSync(file)
    bytes[bytes.length >> 1] ^= 0x01
    fs.writeFileSync(file, bytes)
    const third = await withStderr(() => fresh(cacheDir))
    assert.equal(third.result.fromCache, false)
    assert.match(third.stderr, /damaged calibration cache/)
    assert.deepEqual(statistics(third.result), statistics(first))
  })

  it('recomputes a damaged per-layer entry of sequential calibration, and reuses the intact ones', async () => {
    const cacheDir = path.join(dir, 'sequential')
    const sequential = async (c: Checkpoint) => {
      const m = await loadMethod('magnitude-pruning')
      const params = resolveParams(m, { ratio: 0.5, score: 'wanda' })
      return sequentialStats(c, calibration, needsOf(m, params), startMethod(m, params, c, 'seed'), { ...engine, cacheDir })
    }
    const first = await sequential(ckpt)
    assert.equal(first.layersFromCache, 0)
    const folder = path.join(cacheDir, 'calibration', 'sequential')
    const files = fs.readdirSync(folder).filter(f => f.endsWith('.v8'))
    assert.equal(files.length, 2)
    assert.equal((await sequential(ckpt)).layersFromCache, 2)
    const damaged = path.join(folder, files[0]!)
    const bytes = fs.readFileSync(damaged)
    bytes[bytes.length >> 1] ^= 0x10
    fs.writeFileSync(damaged, bytes)
    const { result: again, stderr } = await withStderr(() => sequential(ckpt))
    assert.equal(again.layersFromCache, 1)
    assert.match(stderr, new RegExp(`warning: damaged calibration cache ${escape(damaged)} \\(its bytes changed since it was written`))
    assert.deepEqual(again.data.inputNorms, first.data.inputNorms)
  })

  it('names the folder and the real cause when the home cannot be written: a link to a missing disk', async () => {
    const link = path.join(dir, 'unmounted')
    fs.symlinkSync(path.join(dir, 'no-such-disk', 'harness'), link)
    const { result, stderr } = await withStderr(() => fresh(link))
    assert.equal(result.fromCache, false)
    // Node says only ENOENT, about <link>/calibration; the cause is the link to nothing. (The graph cache, in the same home, warns too.)
    const line = stderr.split('\n').find(l => l.startsWith('warning: the calibration cache'))
    assert.equal(`${line}\n`, `warning: the calibration cache ${path.join(link, 'calibration')} cannot be written: ${link} is a symbolic link to ${path.join(dir, 'no-such-disk', 'harness')}, which does not exist (a disk that is not mounted, or a folder since removed?) (ENOENT); statistics are recomputed next time (set MOE_HARNESS_HOME to a writable folder with space to keep them).\n`)
    // The graph cache's warning gave no reason at all.
    const graphs = stderr.split('\n').find(l => l.startsWith('warning: the graph cache'))
    assert.equal(graphs, `warning: the graph cache ${path.join(link, 'graphs')} cannot be written: ${link} is a symbolic link to ${path.join(dir, 'no-such-disk', 'harness')}, which does not exist (a disk that is not mounted, or a folder since removed?) (ENOENT); graphs are rebuilt for every session (set MOE_HARNESS_HOME to a writable folder to keep them).`)
    assert.ok(!fs.existsSync(path.join(dir, 'no-such-disk')), 'nothing was created through the link')
  })
})

describe('why a cache folder cannot be written', () => {
  const dir = tmpDir()
  const enoent = Object.assign(new Error('ENOENT: no such file or directory'), { code: 'ENOENT' })
  const enotdir = Object.assign(new Error('ENOTDIR: not a directory'), { code: 'ENOTDIR' })
  const eexist = Object.assign(new Error('EEXIST: file already exists'), { code: 'EEXIST' })

  it('names a file in the way, whichever part of the path it is', () => {
    fs.writeFileSync(path.join(dir, 'file'), 'x')
    assert.equal(unwritableReason(path.join(dir, 'file', 'home', 'calibration'), enotdir, false), `${path.join(dir, 'file')} is a file, not a folder (ENOTDIR)`)
    assert.equal(unwritableReason(path.join(dir, 'file'), eexist, false), `${path.join(dir, 'file')} is a file, not a folder (EEXIST)`)
    fs.symlinkSync(path.join(dir, 'file'), path.join(dir, 'to-file'))
    assert.equal(unwritableReason(path.join(dir, 'to-file', 'calibration'), enotdir, false), `${path.join(dir, 'to-file')} is a symbolic link to ${path.join(dir, 'file')}, which is a file, not a folder (ENOTDIR)`)
  })

  it('tells a folder removed during the write from one that could not be made', () => {
    assert.equal(unwritableReason(path.join(dir, 'gone', 'calibration'), enoent, true), `${path.join(dir, 'gone', 'calibration')} was removed while the file was being written (another process removing the cache?) (ENOENT)`)
    assert.equal(unwritableReason(path.join(dir, 'gone', 'calibration'), enoent, false), `${dir} does not let folders be created in it (ENOENT)`)
  })

  it('names the folder whose permissions or file system decide, and keeps an unknown error\'s message', () => {
    assert.equal(unwritableReason(path.join(dir, 'a', 'b'), Object.assign(new Error('x'), { code: 'EROFS' }), false), `${dir} is on a read-only file system (EROFS)`)
    assert.equal(unwritableReason(path.join(dir, 'a'), Object.assign(new Error('x'), { code: 'EACCES' }), false), `permission denied: ${dir} does not let this user create or change files there (EACCES)`)
    assert.equal(unwritableReason(dir, Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }), true), 'EIO: i/o error, write (EIO)')
  })

  it('follows a home linked into a folder this user cannot enter, rather than blame the writable folder holding the link', () => {
    // As an unprivileged user (root enters every folder): setpriv is util-linux's, on every Debian. The
    // probe runs from a folder of its own under /tmp (the checkout may sit in a folder that user cannot
    // enter, e.g. /root), as JavaScript transpiled here (no tsx, no node_modules from there).
    const root = fs.mkdtempSync('/tmp/moe-harness-perm-')
    after(() => { fs.chmodSync(path.join(root, 'locked'), 0o755); fs.rmSync(root, { recursive: true, force: true }) })
    fs.mkdirSync(path.join(root, 'locked', 'inner'), { recursive: true })
    fs.chmodSync(root, 0o777)
    fs.chmodSync(path.join(root, 'locked'), 0o000)
    fs.symlinkSync(path.join(root, 'locked', 'inner'), path.join(root, 'home'))
    // A relative link below a linked folder: '..' climbs from the real folder (a/b/real), not from 'home2'.
    fs.mkdirSync(path.join(root, 'a', 'b', 'real'), { recursive: true })
    fs.symlinkSync(path.join(root, 'a', 'b', 'real'), path.join(root, 'home2'))
    fs.symlinkSync(path.join('..', '..', '..', 'locked', 'inner'), path.join(root, 'a', 'b', 'real', 'cache'))
    const module = ts.transpileModule(fs.readFileSync('src/util/unwritableFolder.ts', 'utf8'), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } })
    fs.writeFileSync(path.join(root, 'unwritableFolder.mjs'), module.outputText)
    const script = path.join(root, 'probe.mjs')
    fs.writeFileSync(script, `import fs from 'node:fs'\nimport { unwritableReason } from './unwritableFolder.mjs'\n` +
      `const dir = process.argv[2]\ntry { fs.mkdirSync(dir, { recursive: true }); console.log('made') } catch (e) { console.log(unwritableReason(dir, e, false)) }\n`)
    const probe = (dir: string) => spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, script, dir], { encoding: 'utf8', cwd: root })
    const r = probe(path.join(root, 'home', 'calibration'))
    const relative = probe(path.join(root, 'home2', 'cache', 'calibration'))
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stdout.trim(), `${path.join(root, 'home')} is a symbolic link to ${path.join(root, 'locked', 'inner')}, which this user cannot reach: permission denied: this user cannot enter ${path.join(root, 'locked')} (EACCES)`)
    assert.equal(relative.stdout.trim(), `${path.join(root, 'home2', 'cache')} is a symbolic link to ${path.join(root, 'locked', 'inner')}, which this user cannot reach: permission denied: this user cannot enter ${path.join(root, 'locked')} (EACCES)`)
  })
})

describe('calibration temp files', () => {
  it('are named per write (pods sharing a home all run as pid 1), and `cache` tells a dead write\'s leftover from a live one', async () => {
    const dir = tmpDir()
    const ckpt = openCheckpoint(writeTinyCheckpoint(path.join(dir, 'm'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 23 }).dir)
    const home = path.join(dir, 'home')
    const renamed: string[] = []
    const rename = fs.renameSync
    fs.renameSync = ((from: fs.PathLike, to: fs.PathLike) => (renamed.push(String(from)), rename(from, to))) as typeof fs.renameSync
    try {
      await getCalibrationStats(ckpt, calibration, ['routing'], { ...engine, cacheDir: home })
      await getCalibrationStats(ckpt, { ...calibration, seed: 6 }, ['routing'], { ...engine, cacheDir: home })
    } finally {
      fs.renameSync = rename
    }
    const temps = renamed.filter(f => f.includes('.v8.tmp-'))
    assert.equal(temps.length, 2)
    for (const t of temps) assert.match(path.basename(t), new RegExp(`^[0-9a-f]{32}\\.v8\\.tmp-${escape(os.hostname())}-${process.pid}-[0-9a-f]{8}$`))
    const folder = path.join(home, 'calibration')
    const key = fs.readdirSync(folder).find(f => f.endsWith('.v8'))!.slice(0, 32)
    const host = os.hostname()
    const dead = path.join(folder, `${key}.v8.tmp-${host}-999999999-0a1b2c3d`)
    const live = path.join(folder, `${key}.v8.tmp-${host}-${process.pid}-0a1b2c3d`)
    // A pod's process is pid 1 (alive on every host), another host's cannot be asked: their age decides.
    const pod = path.join(folder, `${key}.v8.tmp-sweep-pod-7-1-9f8e7d6c`)
    const podNew = path.join(folder, `${key}.v8.tmp-sweep-pod-7-1-0f0f0f0f`)
    const legacy = path.join(folder, `${key}.v8.tmp-999999999`)
    const old = new Date(Date.now() - 2 * 60 * 60_000)
    for (const f of [dead, live, pod, podNew, legacy]) {
      fs.writeFileSync(f, 'partial')
      if (f !== podNew) fs.utimesSync(f, old, old)
    }
    const scan = scanHome(home, [], Date.now(), new Map())
    const of = (f: string) => scan.entries.find(e => e.path === f)
    assert.equal(of(dead)?.kind, 'calibration-temp')
    assert.equal(of(dead)?.state, 'leftover')
    assert.equal(of(live)?.state, 'live')
    assert.equal(of(pod)?.state, 'leftover')
    assert.equal(of(podNew)?.state, 'live')
    assert.equal(of(legacy)?.state, 'leftover')
  })
})
