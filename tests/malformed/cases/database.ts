// Broken, foreign, locked-down and misplaced results databases for report, export, merge and sweep.
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { garbage } from '../fixtures.ts'
import type { Fixtures, MalformedCase } from './types.ts'

const report = (db: string, dir: string) => ['report', '--db', db, '--out', path.join(dir, 'site')]
const exportJson = (db: string, dir: string) => ['export', '--db', db, '--json', path.join(dir, 'out.json')]

/** A valid harness database at `dir/<name>` whose bytes `edit` then breaks. */
function brokenDb(dir: string, fx: Fixtures, edit: (bytes: Buffer) => Buffer, name = 'results.sqlite'): string {
  const file = fx.harnessDb(path.join(dir, name))
  fs.writeFileSync(file, edit(fs.readFileSync(file)))
  return file
}

/** A valid sweep config whose store is `store` (relative to the case folder). */
function sweepInto(dir: string, fx: Fixtures, store: string): string[] {
  return ['sweep', '--config', fx.config(dir, { models: { tiny: fx.baseModel }, methods: ['frequency-pruning'], ratios: [0], tasks: ['brown-cloze'], subset: { limit: 2 }, pool: { workers: 1, threads: 1 }, store })]
}

export const databaseCases: MalformedCase[] = [
  { name: 'db-missing', setup: dir => report(path.join(dir, 'nope.sqlite'), dir), code: 'STORE_FAILED', message: /nope\.sqlite does not exist/ },
  { name: 'db-is-a-folder', setup: dir => { fs.mkdirSync(path.join(dir, 'results.sqlite')); return report(path.join(dir, 'results.sqlite'), dir) }, code: 'STORE_FAILED', message: /results\.sqlite is a folder/ },
  { name: 'db-is-text', setup: dir => { fs.writeFileSync(path.join(dir, 'results.sqlite'), 'model,task,acc\ntiny,brown-cloze,0.5\n'); return report(path.join(dir, 'results.sqlite'), dir) }, code: 'STORE_NOT_HARNESS', message: /results\.sqlite is not a moe-harness results database: it is not a SQLite database/ },
  { name: 'db-truncated-header', setup: (dir, fx) => report(brokenDb(dir, fx, b => b.subarray(0, 60)), dir), code: 'STORE_CORRUPT', message: /results\.sqlite is damaged.*truncated/ },
  { name: 'db-truncated-pages', setup: (dir, fx) => report(brokenDb(dir, fx, b => b.subarray(0, Math.floor(b.length / 2))), dir), code: 'STORE_CORRUPT', message: /results\.sqlite is damaged/ },
  { name: 'db-garbage-pages', setup: (dir, fx) => report(brokenDb(dir, fx, b => Buffer.concat([b.subarray(0, 100), garbage(b.length - 100, 9)])), dir), code: 'STORE_CORRUPT', message: /results\.sqlite is damaged/ },
  { name: 'db-export-truncated', setup: (dir, fx) => exportJson(brokenDb(dir, fx, b => b.subarray(0, Math.floor(b.length * 0.7))), dir), code: 'STORE_CORRUPT', message: /results\.sqlite is damaged/ },
  { name: 'db-foreign-report', setup: (dir, fx) => report(fx.foreignDb(path.join(dir, 'notes.sqlite')), dir), code: 'STORE_NOT_HARNESS', message: /notes\.sqlite is not a moe-harness results database.*notes/ },
  { name: 'db-foreign-export', setup: (dir, fx) => exportJson(fx.foreignDb(path.join(dir, 'notes.sqlite')), dir), code: 'STORE_NOT_HARNESS', message: /notes\.sqlite/ },
  { name: 'db-foreign-sweep', setup: (dir, fx) => { fx.foreignDb(path.join(dir, 'notes.sqlite')); return sweepInto(dir, fx, 'notes.sqlite') }, code: 'STORE_NOT_HARNESS', message: /notes\.sqlite.*never adds its tables/ },
  {
    name: 'db-other-application-id',
    setup: (dir, fx) => {
      const file = fx.foreignDb(path.join(dir, 'app.sqlite'))
      const db = new Database(file)
      db.pragma('application_id = 1234')
      db.close()
      return report(file, dir)
    },
    code: 'STORE_NOT_HARNESS', message: /app\.sqlite.*application id/,
  },
  { name: 'db-empty-file', setup: dir => { fs.writeFileSync(path.join(dir, 'results.sqlite'), ''); return exportJson(path.join(dir, 'results.sqlite'), dir) }, code: 'STORE_FAILED', message: /results\.sqlite is an empty database/ },
  {
    name: 'db-newer-schema',
    setup: (dir, fx) => {
      const file = fx.harnessDb(path.join(dir, 'results.sqlite'))
      const db = new Database(file)
      db.pragma('user_version = 99')
      db.pragma('journal_mode = DELETE')
      db.close()
      return report(file, dir)
    },
    code: 'STORE_FAILED', message: /schema version 99.*upgrade moe-harness/,
  },
  {
    name: 'db-merge-corrupt-input',
    setup: (dir, fx) => ['merge', fx.harnessDb(path.join(dir, 'a.sqlite')), brokenDb(dir, fx, b => b.subarray(0, Math.floor(b.length / 2)), 'b.sqlite'), '--out', path.join(dir, 'all.sqlite')],
    code: 'STORE_CORRUPT', message: /b\.sqlite is damaged/,
  },
  {
    name: 'db-merge-foreign-input',
    setup: (dir, fx) => ['merge', fx.harnessDb(path.join(dir, 'a.sqlite')), fx.foreignDb(path.join(dir, 'notes.sqlite')), '--out', path.join(dir, 'all.sqlite')],
    code: 'STORE_NOT_HARNESS', message: /notes\.sqlite/,
  },
  {
    name: 'db-merge-missing-input',
    setup: (dir, fx) => ['merge', fx.harnessDb(path.join(dir, 'a.sqlite')), path.join(dir, 'shard9.sqlite'), '--out', path.join(dir, 'all.sqlite')],
    code: 'STORE_FAILED', message: /shard9\.sqlite does not exist/,
  },
  {
    name: 'db-merge-out-is-foreign',
    setup: (dir, fx) => ['merge', fx.harnessDb(path.join(dir, 'a.sqlite')), '--out', fx.foreignDb(path.join(dir, 'notes.sqlite'))],
    code: ['STORE_NOT_HARNESS', 'OUTPUT_UNSAFE'], message: /notes\.sqlite/,
  },
  {
    name: 'db-merge-out-is-a-folder',
    setup: (dir, fx) => { fs.mkdirSync(path.join(dir, 'all.sqlite')); return ['merge', fx.harnessDb(path.join(dir, 'a.sqlite')), '--out', path.join(dir, 'all.sqlite')] },
    code: ['STORE_FAILED', 'OUTPUT_UNSAFE'], message: /all\.sqlite is a folder|all\.sqlite/,
  },
  {
    name: 'db-sweep-into-truncated-db',
    setup: (dir, fx) => { brokenDb(dir, fx, b => b.subarray(0, Math.floor(b.length * 0.6))); return sweepInto(dir, fx, 'results.sqlite') },
    code: 'STORE_CORRUPT', message: /results\.sqlite is damaged/,
  },
  {
    name: 'db-sweep-db-is-a-folder',
    setup: (dir, fx) => { fs.mkdirSync(path.join(dir, 'store')); return sweepInto(dir, fx, 'store') },
    code: 'STORE_FAILED', message: /store is a folder/,
  },
  {
    name: 'db-sweep-read-only-file', unprivileged: true,
    setup: (dir, fx) => { const f = fx.harnessDb(path.join(dir, 'results.sqlite')); fs.chmodSync(f, 0o444); return sweepInto(dir, fx, 'results.sqlite') },
    code: 'STORE_READONLY', message: /results\.sqlite is read-only/,
  },
  {
    name: 'db-sweep-read-only-folder', unprivileged: true,
    setup: (dir, fx) => {
      fs.mkdirSync(path.join(dir, 'ro'))
      // The file itself is writable; only its folder is not (SQLite needs -wal/-shm there).
      fs.chmodSync(fx.harnessDb(path.join(dir, 'ro', 'results.sqlite')), 0o666)
      fs.chmodSync(path.join(dir, 'ro'), 0o555)
      return sweepInto(dir, fx, 'ro/results.sqlite')
    },
    code: 'STORE_READONLY', message: /not writable/,
  },
]

/** Valid databases in read-only places: read-only commands must work and write nothing beside them. */
export const readOnlyOkCases: MalformedCase[] = [
  {
    name: 'db-report-from-read-only-folder', unprivileged: true,
    setup: (dir, fx) => {
      fs.mkdirSync(path.join(dir, 'ro'))
      fx.harnessDb(path.join(dir, 'ro', 'results.sqlite'))
      fs.chmodSync(path.join(dir, 'ro'), 0o555)
      return ['report', '--db', path.join(dir, 'ro', 'results.sqlite'), '--out', path.join(dir, 'site')]
    },
    code: 'OK', message: /wrote \d+ pages/, mayCreate: ['site'],
  },
  {
    name: 'db-export-from-read-only-folder', unprivileged: true,
    setup: (dir, fx) => {
      fs.mkdirSync(path.join(dir, 'ro'))
      fx.harnessDb(path.join(dir, 'ro', 'results.sqlite'))
      fs.chmodSync(path.join(dir, 'ro'), 0o555)
      return ['export', '--db', path.join(dir, 'ro', 'results.sqlite'), '--json', path.join(dir, 'out.json')]
    },
    code: 'OK', message: /exported \d+ rows/, mayCreate: ['out.json'],
  },
  {
    name: 'db-export-leaves-no-journal',
    setup: (dir, fx) => ['export', '--db', fx.harnessDb(path.join(dir, 'results.sqlite')), '--csv', path.join(dir, 'out.csv')],
    code: 'OK', message: /exported \d+ rows/, mayCreate: ['out.csv'],
  },
]
