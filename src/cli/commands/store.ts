import fs from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import { stringify } from 'csv-stringify/sync'
import { fail } from '../../errors.ts'
import { ResultsStore, validateMergeInputs } from '../../store/resultsStore.ts'
import { readResultRows } from '../../store/resultRows.ts'

export function registerStore(program: Command): void {
  program
    .command('export')
    .description('Export the results store as CSV and/or JSON (one row per model × variant × task × metric).')
    .requiredOption('--db <file>', 'SQLite results store')
    .option('--csv <file>', 'write CSV here')
    .option('--json <file>', 'write JSON here')
    .action((flags: { db: string; csv?: string; json?: string }) => {
      if (!flags.csv && !flags.json) fail('INVALID_ARGUMENT', 'Pass --csv FILE and/or --json FILE.')
      const store = new ResultsStore(flags.db, { readonly: true })
      try {
        const rows = readResultRows(store)
        const write = (file: string, text: string) => {
          fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true })
          const tmp = `${file}.tmp-${process.pid}`
          fs.writeFileSync(tmp, text)
          fs.renameSync(tmp, file)
        }
        if (flags.csv) write(flags.csv, stringify(rows, { header: true }))
        if (flags.json) write(flags.json, JSON.stringify(rows, null, 1))
        process.stdout.write(`exported ${rows.length} rows\n`)
      } finally {
        store.close()
      }
    })

  program
    .command('merge <dbs...>')
    .description('Combine result stores (e.g. shards run on different machines) into one; identical cells are kept once.')
    .requiredOption('--out <file>', 'the merged store (created or extended)')
    .action((dbs: string[], flags: { out: string }) => {
      // Every input is checked (ours, readable, not corrupt) before the output is created or touched.
      validateMergeInputs(dbs.filter(db => path.resolve(db) !== path.resolve(flags.out)), flags.out)
      const out = new ResultsStore(flags.out)
      try {
        for (const db of dbs) {
          if (path.resolve(db) === path.resolve(flags.out)) continue
          const { runs, skipped } = out.mergeFrom(db)
          process.stdout.write(`${db}: ${runs} runs merged, ${skipped} already present\n`)
        }
      } finally {
        out.close()
      }
    })
}
