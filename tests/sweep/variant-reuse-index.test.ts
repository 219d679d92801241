// The index of prepared variants by id (src/variants/variantIndex.ts): an entry reads back exactly as
// written; every damaged or foreign entry is refused with a reason (never a record); writers racing on
// one id (separate processes) never leave a reader a partial entry; a killed writer's temp is cleared.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { variantFolderName } from '../../src/identity/keys.ts'
import { findVariantRecord, recordVariant, VARIANT_INDEX_FOLDER, type VariantRecord } from '../../src/variants/variantIndex.ts'
import { ROOT } from '../helpers/cli.ts'
import { tmpDir } from '../helpers/tmp.ts'

const MODEL = 'ab'.repeat(32)
const ID = '0123456789abcdef01234567'
const record = (over: Partial<VariantRecord> = {}): VariantRecord => ({
  variant_id: ID, model_id: MODEL, method: 'frequency-pruning', params_json: '{"ratio":0.5}', ratio: 0.5, achieved_ratio: 0.5,
  content_hash: 'c'.repeat(24), accounting_json: '{"bytes":1}', report_json: '{}', warnings_json: '[]', calibration_json: null,
  transform_seconds: 0.123456789, status: 'ready', error: null, ...over,
})

describe('the prepared-variant index', () => {
  it('reads back an entry exactly, under the folder its record names', () => {
    const root = tmpDir()
    assert.equal(findVariantRecord(root, ID, MODEL, () => assert.fail('no entry is no warning')), undefined)
    recordVariant(root, record())
    const found = findVariantRecord(root, ID, MODEL, () => assert.fail('no warning'))!
    assert.deepEqual(found.record, record())
    assert.equal(found.dir, path.join(root, variantFolderName(MODEL, 'c'.repeat(24))))
    // Rewritten by a later preparation of the same id: the later record wins.
    recordVariant(root, record({ transform_seconds: 2 }))
    assert.equal(findVariantRecord(root, ID, MODEL, () => {})!.record.transform_seconds, 2)
    assert.deepEqual(fs.readdirSync(path.join(root, VARIANT_INDEX_FOLDER)), [`${ID}.json`])
  })

  it('refuses every damaged or foreign entry with a reason, never returning its record', () => {
    const root = tmpDir()
    const file = path.join(root, VARIANT_INDEX_FOLDER, `${ID}.json`)
    recordVariant(root, record())
    const good = JSON.parse(fs.readFileSync(file, 'utf8'))
    const other = record({ content_hash: 'd'.repeat(24) })
    const cases: [string, string, RegExp][] = [
      ['truncated', fs.readFileSync(file, 'utf8').slice(0, 50), /not JSON/],
      ['not an entry', '[1, 2]', /expected \{"format": 1/],
      ['another folder, digest kept', JSON.stringify({ ...good, folder: variantFolderName(MODEL, 'd'.repeat(24)), record: other }), /digest does not match/],
      ['a changed number, digest kept', JSON.stringify({ ...good, record: { ...good.record, ratio: 0.25 } }), /digest does not match/],
    ]
    for (const [what, text, why] of cases) {
      fs.writeFileSync(file, text)
      const warnings: string[] = []
      assert.equal(findVariantRecord(root, ID, MODEL, m => warnings.push(m)), undefined, what)
      assert.equal(warnings.length, 1, what)
      assert.match(warnings[0], why, what)
      assert.ok(warnings[0].includes(file) && warnings[0].endsWith('preparing the variant again'), warnings[0])
    }
    // A whole entry of another model or id (copied by hand) is refused too.
    recordVariant(root, record())
    const warnings: string[] = []
    assert.equal(findVariantRecord(root, ID, 'ef'.repeat(32), m => warnings.push(m)), undefined)
    assert.match(warnings[0], /it records model abab/)
    fs.copyFileSync(file, path.join(root, VARIANT_INDEX_FOLDER, `${'9'.repeat(24)}.json`))
    assert.equal(findVariantRecord(root, '9'.repeat(24), MODEL, m => warnings.push(m)), undefined)
    assert.match(warnings[1], new RegExp(`it records variant ${ID}`))
    assert.equal(findVariantRecord(root, '../escape', MODEL, () => assert.fail('not looked up')), undefined)
  })

  it('writers racing on one id in separate processes never leave a reader a partial entry; a dead writer\'s temp is removed', async () => {
    const root = tmpDir()
    recordVariant(root, record())
    const writer = (n: number) => new Promise<number | null>(resolve => {
      const script = `import { recordVariant } from ${JSON.stringify(path.join(ROOT, 'src/variants/variantIndex.ts'))}
        const base = ${JSON.stringify(record())}
        for (let i = 0; i < 300; i++) recordVariant(${JSON.stringify(root)}, { ...base, transform_seconds: ${n} * 1000 + i, warnings_json: JSON.stringify(['x'.repeat(${n} * 5000 + i)]) })`
      spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: 'inherit' }).on('close', resolve)
    })
    const writers = Promise.all([1, 2, 3].map(writer))
    let reads = 0
    let done = false
    void writers.then(() => { done = true })
    while (!done) {
      const found = findVariantRecord(root, ID, MODEL, m => assert.fail(`a reader saw a damaged entry: ${m}`))
      assert.ok(found, 'an entry is always there')
      const n = Math.floor(found.record.transform_seconds! / 1000)
      if (n > 0) assert.equal(JSON.parse(found.record.warnings_json!)[0].length, n * 5000 + found.record.transform_seconds! % 1000)
      reads++
      await new Promise(res => setImmediate(res))
    }
    assert.deepEqual(await writers, [0, 0, 0])
    assert.ok(reads > 10, `reads: ${reads}`)
    assert.equal(findVariantRecord(root, ID, MODEL, () => assert.fail('whole'))!.record.transform_seconds! % 1000, 299)
    // A temp entry of a process of this host that is gone is removed by the next write.
    const dead = path.join(root, VARIANT_INDEX_FOLDER, `${ID}.json.tmp-${(await import('node:os')).hostname()}-999999-abcdef`)
    fs.writeFileSync(dead, '{"partial')
    recordVariant(root, record())
    assert.deepEqual(fs.readdirSync(path.join(root, VARIANT_INDEX_FOLDER)), [`${ID}.json`])
  })
})
