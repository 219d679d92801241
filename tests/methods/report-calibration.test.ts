// The method page says which calibration procedure produced each variant, from the variant row alone.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ROOT, runCli } from '../helpers/cli.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import { tmpDir } from '../helpers/tmp.ts'

const dir = tmpDir()
writeTinyCheckpoint(path.join(dir, 'model'), { family: 'mixtral', experts: 4, topK: 2, layers: 2, hidden: 32, ffn: 16, seed: 73 })
const configFile = path.join(dir, 'calibration.config.ts')
fs.writeFileSync(configFile, `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}
export default defineConfig(${JSON.stringify({
  models: { tiny: 'model' },
  methods: [{ method: 'naee', params: { calibration: ['sequential', 'one-pass'] } }, 'frequency-pruning'],
  ratios: [0.25],
  tasks: ['brown-cloze'],
  subset: { sample: 8 },
  calibration: { sequences: 4, length: 32 },
}, null, 2)})
`)

describe('method page: calibration procedure', () => {
  it('shows sequential and one-pass variants of the same method apart', () => {
    const db = path.join(dir, 'results.sqlite')
    const env = { MOE_HARNESS_HOME: path.join(dir, 'home') }
    const sweep = runCli(['sweep', '--config', configFile, '--db', db], { env })
    assert.equal(sweep.status, 0, sweep.stderr)
    const site = path.join(dir, 'site')
    const r = runCli(['report', '--db', db, '--out', site])
    assert.equal(r.status, 0, r.stderr)
    const page = fs.readFileSync(path.join(site, 'method-naee.html'), 'utf8')
    const cells = [...page.matchAll(/<td class="text calibration-procedure">([^<]*)<\/td>/g)].map(m => m[1])
    assert.ok(cells.some(c => c.startsWith('sequential (')), cells.join(' | '))
    assert.ok(cells.some(c => c.startsWith('one-pass (')), cells.join(' | '))
    const freq = fs.readFileSync(path.join(site, 'method-frequency-pruning.html'), 'utf8')
    assert.match(freq, /<td class="text calibration-procedure">one-pass \(\d+ tokens\)<\/td>/)
  })
})
