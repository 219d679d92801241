// A variant prepared under a harness home is found by its id (the home's index, variants/by-id/)
// when the results store does not know it: a sweep into a new store, or with a read-only home, runs no
// method and scores exactly what the first store holds; a damaged folder or index entry is never
// used (prepared again in a writable home, a FILE_ACCESS error naming the damage in a read-only one);
// a moved model re-publishes a found folder.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { lastJson, runCli, runCliAsync, type CliResult, writeSweepConfig } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'
import { snapshot } from './storeSnapshot.ts'

const dir = tmpDir()
fs.chmodSync(dir, 0o755) // read by `nobody` in the read-only home case
writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 16, ffn: 8, seed: 71 })
const home = path.join(dir, 'home')
const index = path.join(home, 'variants', 'by-id')
const stores = path.join(dir, 'stores')
fs.mkdirSync(stores)
fs.chmodSync(stores, 0o777)
const env = { MOE_HARNESS_HOME: home }

function writeConfig(name: string, model: string): string {
  const file = path.join(dir, `${name}.config.ts`)
  const body = {
    models: { m: model },
    methods: ['frequency-pruning', { method: 'magnitude-pruning', params: { score: 'magnitude' } }],
    ratios: [0.5], tasks: ['brown-cloze'], subset: { sample: 6 }, calibration: { sequences: 2, length: 16 }, pool: { workers: 1, threads: 1 },
  }
  writeSweepConfig(file, body)
  return file
}
const config = writeConfig('base', 'model')
const db = (name: string) => path.join(stores, `${name}.sqlite`)
const sweep = (store: string, cfg = config): CliResult => runCli(['sweep', '--config', cfg, '--db', db(store), '--json'], { env })
const FOUND = /variant m (frequency-pruning|magnitude-pruning) r=0\.5: prepared folder [0-9a-f]{16}-[0-9a-f]{24} found by its id in .*by-id; the method is not run again/g
const foundMethods = (stderr: string) => [...stderr.matchAll(FOUND)].map(m => m[1]).sort()

/** Every column of the store's variant rows but their times (created_at, last_used_at), by method. */
function variantRows(store: string): Record<string, unknown> {
  const s = new ResultsStore(db(store), { readonly: true })
  try {
    return Object.fromEntries(s.all<any>('SELECT * FROM variants ORDER BY method').map(({ created_at: _, last_used_at: _used, ...row }) => [row.method, row]))
  } finally {
    s.close()
  }
}

/** The index entry and the folder of the method's variant. */
function entryOf(method: string): { file: string; entry: any; folder: string } {
  for (const name of fs.readdirSync(index)) {
    const file = path.join(index, name)
    const entry = JSON.parse(fs.readFileSync(file, 'utf8'))
    if (entry.record.method === method) return { file, entry, folder: path.join(home, 'variants', entry.folder) }
  }
  throw new Error(`no index entry for ${method}`)
}

/** Runs `fn` with the home read-only (chmod -R a-w), restored after. */
async function readOnlyHome<T>(fn: () => Promise<T>): Promise<T> {
  const modes = new Map<string, number>()
  const walk = (p: string) => {
    modes.set(p, fs.statSync(p).mode & 0o7777)
    if (fs.statSync(p).isDirectory()) for (const n of fs.readdirSync(p)) walk(path.join(p, n))
  }
  walk(home)
  for (const [p, mode] of modes) fs.chmodSync(p, mode & ~0o222)
  try {
    return await fn()
  } finally {
    for (const [p, mode] of modes) fs.chmodSync(p, mode)
  }
}
/** The CLI as `nobody` when the tests run as root (root writes through any mode), else as ourselves. */
const asReader = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}

describe('a prepared variant is found by its id in the harness home', () => {
  it('a sweep into a new store runs no method, records the variants as the first store did and scores exactly alike', () => {
    const first = sweep('a')
    assert.equal(first.status, 0, first.stderr)
    assert.deepEqual(foundMethods(first.stderr), [], 'the first sweep prepares both variants')
    assert.equal(fs.readdirSync(index).filter(n => n.endsWith('.json')).length, 2)

    const r = sweep('b')
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(foundMethods(r.stderr), ['frequency-pruning', 'magnitude-pruning'])
    assert.equal(lastJson(r.stdout).completed, 2) // the new store holds no runs: both cells scored
    // Same rows, down to the method's measured transform seconds: the variants were not prepared again.
    assert.deepEqual(variantRows('b'), variantRows('a'))
    assert.deepEqual(snapshot(db('b')), snapshot(db('a')))
    assert.equal(snapshot(db('a')).length, 2)
  })

  it('works with a read-only home and a new store', async () => {
    const r = await readOnlyHome(() => runCliAsync(['sweep', '--config', config, '--db', db('readonly'), '--json'], { env, cwd: dir, timeoutMs: 120_000, ...asReader }))
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(foundMethods(r.stderr), ['frequency-pruning', 'magnitude-pruning'])
    assert.deepEqual(variantRows('readonly'), variantRows('a'))
    assert.deepEqual(snapshot(db('readonly')), snapshot(db('a')))
  })

  it('a found folder whose edits no longer hash to its name is never used: a FILE_ACCESS error in a read-only home, prepared again in a writable one', async () => {
    const { folder } = entryOf('frequency-pruning')
    const editsFile = path.join(folder, 'edits.json')
    const original = fs.readFileSync(editsFile, 'utf8')
    const edits = JSON.parse(original)
    const layer = Object.keys(edits.layers).find(l => edits.layers[l].disabled?.length)!
    edits.layers[layer].disabled = edits.layers[layer].disabled.slice(1) // still valid JSON of the right shape
    fs.writeFileSync(editsFile, JSON.stringify(edits))

    const ro = await readOnlyHome(() => runCliAsync(['sweep', '--config', config, '--db', db('damaged-ro')], { env, cwd: dir, timeoutMs: 120_000, ...asReader }))
    assert.equal(ro.status, 1, ro.stderr)
    assert.match(ro.stderr, /error \[FILE_ACCESS\]: Cannot prepare 1 variant\(s\) \(m frequency-pruning r=0\.5: its folder is damaged, /)
    assert.ok(ro.stderr.includes(`${editsFile} is damaged (its edits hash to`), ro.stderr)

    const r = sweep('damaged')
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(foundMethods(r.stderr), ['magnitude-pruning'])
    assert.match(r.stderr, /warning: damaged prepared-variant cache: .*edits\.json is damaged/)
    assert.deepEqual(snapshot(db('damaged')), snapshot(db('a')))
    const rows = variantRows('damaged') as Record<string, any>
    assert.notEqual(rows['frequency-pruning'].transform_seconds, (variantRows('a') as Record<string, any>)['frequency-pruning'].transform_seconds, 'prepared again')
    assert.deepEqual(JSON.parse(fs.readFileSync(editsFile, 'utf8')).layers, JSON.parse(original).layers, 'the folder holds the variant again')
  })

  it('a damaged index entry is never followed: not to another folder, not with a broken digest; the variant is prepared again', () => {
    const freq = entryOf('frequency-pruning')
    const mag = entryOf('magnitude-pruning')
    // A valid folder of the same model, but not this variant's: the digest no longer matches.
    fs.writeFileSync(freq.file, JSON.stringify({ ...freq.entry, folder: mag.entry.folder, record: { ...freq.entry.record, content_hash: mag.entry.record.content_hash } }))
    fs.writeFileSync(mag.file, fs.readFileSync(mag.file, 'utf8').slice(0, 40)) // truncated

    const r = sweep('bad-index')
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(foundMethods(r.stderr), [])
    assert.match(r.stderr, /damaged prepared-variant index entry .*by-id\/[0-9a-f]{24}\.json \(its digest does not match its content\); preparing the variant again/)
    assert.match(r.stderr, /damaged prepared-variant index entry .*by-id\/[0-9a-f]{24}\.json \(not JSON: /)
    assert.deepEqual(snapshot(db('bad-index')), snapshot(db('a')))
    // Both entries were rewritten whole by the preparation: the next new store finds both again.
    assert.equal(entryOf('frequency-pruning').entry.folder, freq.entry.folder)
    const again = sweep('after-bad-index')
    assert.deepEqual(foundMethods(again.stderr), ['frequency-pruning', 'magnitude-pruning'])
    assert.equal(fs.readdirSync(index).length, 2, 'no temp entries left')
  })

  it('a folder found by id for a moved model is re-published for the new path (same weights, no method run)', () => {
    const moved = path.join(dir, 'model-moved')
    fs.cpSync(path.join(dir, 'model'), moved, { recursive: true })
    const r = sweep('moved', writeConfig('moved', 'model-moved'))
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(foundMethods(r.stderr), ['frequency-pruning', 'magnitude-pruning'])
    for (const method of ['frequency-pruning', 'magnitude-pruning']) {
      assert.equal(JSON.parse(fs.readFileSync(path.join(entryOf(method).folder, 'edits.json'), 'utf8')).modelDir, moved)
    }
    assert.deepEqual(snapshot(db('moved')), snapshot(db('a')))
  })
})
