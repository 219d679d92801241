import fs from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import { stringify } from 'csv-stringify/sync'
import { fail } from '../../errors.ts'
import { ResultsStore, validateMergeInputs } from '../../store/resultsStore.ts'
import { currentFailureKeys, failureKey } from '../../report/currentVariants.ts'
import { readResultRows } from '../../store/resultRows.ts'
import { checkOutputFile, writeOutputFile, type OutputContext } from '../../util/outputPaths.ts'
import { CSV_EXPORT, JSON_EXPORT, modelsOf, RESULT_COLUMNS, RESULTS_DATABASE } from '../outputRules.ts'

export function registerStore(program: Command): void {
  program
    .command('export')
    .description('Export the results store as CSV and/or JSON (one row per model × variant × task × metric).')
    .requiredOption('--db <file>', 'SQLite results store')
    .option('--csv <file>', 'write CSV here (replaces only a CSV export of moe-harness; - = stdout)')
    .option('--json <file>', 'write JSON here (replaces only a JSON export of moe-harness; - = stdout)')
    .action((flags: { db: string; csv?: string; json?: string }) => {
      if (flags.csv === undefined && flags.json === undefined) fail('INVALID_ARGUMENT', 'Pass --csv FILE and/or --json FILE.')
      // An empty value (`--json "$OUT"` with OUT unset) was skipped silently; checkOutputFile names it.
      if (flags.csv && flags.json && path.resolve(flags.csv) === path.resolve(flags.json)) fail('INVALID_ARGUMENT', `--csv and --json are the same file ${flags.csv}; pass two different files.`)
      const store = new ResultsStore(flags.db, { readonly: true })
      try {
        const ctx = (source: string): OutputContext => ({ source, databases: [flags.db], models: modelsOf(store) })
        const outputs = [
          ...(flags.csv !== undefined ? [{ file: flags.csv, ctx: ctx('--csv'), rule: CSV_EXPORT }] : []),
          ...(flags.json !== undefined ? [{ file: flags.json, ctx: ctx('--json'), rule: JSON_EXPORT }] : []),
        ]
        // '-' is stdout, as for most Unix tools (`--csv -` wrote a file named '-' in the current folder).
        const toStdout = (o: { file: string }) => o.file === '-'
        // Both paths are checked before either is written.
        for (const o of outputs) if (!toStdout(o)) checkOutputFile(o.file, o.ctx, o.rule)
        // The failures the report lists, no others (one rule: a failure a later sweep completed is not current).
        const current = currentFailureKeys(store)
        const rows = readResultRows(store).filter(r => r.status !== 'failed' || current.has(failureKey(r.variant_id, r.task)))
        // Explicit columns: an empty export still has its header (and stays recognisable as ours).
        const text = (rule: typeof CSV_EXPORT) => (rule === CSV_EXPORT ? stringify(rows, { header: true, columns: [...RESULT_COLUMNS] }) : JSON.stringify(rows, null, 1))
        for (const o of outputs) {
          if (toStdout(o)) process.stdout.write(text(o.rule))
          else writeOutputFile(o.file, o.ctx, o.rule, tmp => fs.writeFileSync(tmp, text(o.rule)))
        }
        // On stderr when the data goes to stdout, so a pipe gets the export only.
        ;(outputs.some(toStdout) ? process.stderr : process.stdout).write(`exported ${rows.length} rows\n`)
      } finally {
        store.close()
      }
    })

  program
    .command('merge <dbs...>')
    .description('Combine result stores (e.g. shards run on different machines) into one; identical cells are kept once.')
    .requiredOption('--out <file>', 'the merged store: created, or extended when it is already a results database')
    .action((dbs: string[], flags: { out: string }) => {
      const ctx: OutputContext = { source: '--out' }
      // The output path first (a folder, a foreign file, a model folder), then every input (ours,
      // readable, not corrupt), all before the output is created or touched.
      checkOutputFile(flags.out, ctx, RESULTS_DATABASE)
      // The output named as an input too: it is already "merged into" itself, so it is skipped —
      // and said so, rather than silently dropped (or reported as "no input").
      const isOut = (db: string) => path.resolve(db) === path.resolve(flags.out)
      const inputs = dbs.filter(db => !isOut(db))
      if (inputs.length === 0) {
        fail('INVALID_ARGUMENT', `merge: the only input, ${dbs[0]}, is also the output --out ${flags.out}; a database cannot be merged into itself. Pass the databases to merge and a different --out (or the existing store to extend as --out, and the others as inputs).`)
      }
      validateMergeInputs(inputs, flags.out)
      const lines: string[] = dbs.filter(isOut).slice(0, 1).map(db => `${db}: skipped, it is the output --out (its runs are already there)\n`)
      const mergeInto = (file: string) => {
        const out = new ResultsStore(file, { flag: '--out' })
        try {
          for (const db of inputs) {
            const { runs, skipped } = out.mergeFrom(db)
            lines.push(`${db}: ${runs} runs merged, ${skipped} already present\n`)
          }
        } finally {
          out.close()
        }
      }
      if (fs.existsSync(flags.out) && fs.statSync(flags.out).size > 0) {
        // An existing store is extended in place: each input is merged in one SQLite transaction,
        // and another process may be using the store, so it is never swapped for a copy.
        mergeInto(flags.out)
      } else {
        // A new store is built beside the target and renamed in only when every input is merged.
        writeOutputFile(flags.out, ctx, RESULTS_DATABASE, mergeInto)
      }
      process.stdout.write(lines.join(''))
    })
}
