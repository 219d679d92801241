// Output paths that must be refused: they are or hold the database, the working folder, a model or
// a file the harness did not write. Nothing may be deleted or changed.
import fs from 'node:fs'
import path from 'node:path'
import type { MalformedCase } from './types.ts'

const OUT = ['OUTPUT_UNSAFE', 'OUTPUT_FAILED', 'INVALID_ARGUMENT']

function userFiles(dir: string): void {
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'my notes\n')
  fs.mkdirSync(path.join(dir, 'thesis'), { recursive: true })
  fs.writeFileSync(path.join(dir, 'thesis', 'chapter1.tex'), '\\chapter{One}\n')
}

const transform = (model: string, out: string) => ['transform', '--model', model, '--method', 'frequency-pruning', '--ratio', '0.25', '--calibration-sequences', '2', '--calibration-length', '8', '--out', out]

export const outputPathCases: MalformedCase[] = [
  {
    name: 'out-report-cwd', area: 'H1',
    setup: (dir, fx) => { userFiles(dir); return ['report', '--db', fx.harnessDb(path.join(dir, 'r.sqlite')), '--out', '.'] },
    code: OUT, message: /--out|\./,
  },
  {
    name: 'out-report-db-folder', area: 'H1',
    setup: (dir, fx) => { fs.mkdirSync(path.join(dir, 'results')); return ['report', '--db', fx.harnessDb(path.join(dir, 'results', 'r.sqlite')), '--out', path.join(dir, 'results')] },
    code: OUT, message: /r\.sqlite|database/,
  },
  {
    name: 'out-report-existing-file', area: 'H1',
    setup: (dir, fx) => { userFiles(dir); return ['report', '--db', fx.harnessDb(path.join(dir, 'r.sqlite')), '--out', path.join(dir, 'notes.txt')] },
    code: OUT, message: /notes\.txt/,
  },
  {
    name: 'out-report-user-folder', area: 'H1',
    setup: (dir, fx) => { userFiles(dir); return ['report', '--db', fx.harnessDb(path.join(dir, 'r.sqlite')), '--out', path.join(dir, 'thesis')] },
    code: OUT, message: /thesis/,
  },
  {
    name: 'out-report-under-a-file', area: 'H1',
    setup: (dir, fx) => { userFiles(dir); return ['report', '--db', fx.harnessDb(path.join(dir, 'r.sqlite')), '--out', path.join(dir, 'notes.txt', 'site')] },
    code: [...OUT, 'FILE_ACCESS', 'REPORT_FAILED'], message: /notes\.txt/,
  },
  {
    name: 'out-transform-model-folder', area: 'H1',
    setup: (dir, fx) => { const m = fx.model(dir); return transform(m, m) },
    code: OUT, message: /model/,
  },
  {
    name: 'out-transform-existing-file', area: 'H1',
    setup: (dir, fx) => { userFiles(dir); return transform(fx.baseModel, path.join(dir, 'notes.txt')) },
    code: OUT, message: /notes\.txt/,
  },
  {
    name: 'out-start-report-outdir-dot', area: 'H1',
    setup: (dir, fx) => {
      userFiles(dir)
      const config = { models: { tiny: fx.baseModel }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 2 }, pool: { workers: 1, threads: 1 }, store: 'results.sqlite', report: { outDir: '.' } }
      return ['start', '--config', fx.config(dir, config)]
    },
    code: OUT, message: /report\.outDir/,
  },
  {
    name: 'out-start-report-outdir-model', area: 'H1',
    setup: (dir, fx) => {
      fx.model(dir)
      const config = { models: { tiny: './model' }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 2 }, pool: { workers: 1, threads: 1 }, store: 'results.sqlite', report: { outDir: 'model' } }
      return ['start', '--config', fx.config(dir, config)]
    },
    code: OUT, message: /report\.outDir|model/,
  },
  {
    name: 'out-export-over-database', area: 'H1',
    setup: (dir, fx) => { const db = fx.harnessDb(path.join(dir, 'r.sqlite')); return ['export', '--db', db, '--csv', db] },
    code: OUT, message: /r\.sqlite/,
  },
  {
    name: 'out-export-over-user-file', area: 'H1',
    setup: (dir, fx) => { userFiles(dir); return ['export', '--db', fx.harnessDb(path.join(dir, 'r.sqlite')), '--json', path.join(dir, 'notes.txt')] },
    code: OUT, message: /notes\.txt/,
  },
]
