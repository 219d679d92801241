import path from 'node:path'
import type { Command } from 'commander'
import { summarize } from '../../report/leaderboardData.ts'
import { renderSite } from '../../report/renderSite.ts'
import { ResultsStore } from '../../store/resultsStore.ts'

export async function buildReport(db: string, outDir: string, title: string): Promise<string[]> {
  const store = new ResultsStore(db, { readonly: true })
  try {
    return await renderSite(summarize(store, title), outDir)
  } finally {
    store.close()
  }
}

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('Render the static leaderboard site from the results store (never re-evaluates); opens from file:// with no network.')
    .requiredOption('--db <file>', 'SQLite results store')
    .option('--out <dir>', 'output folder (replaced atomically)', 'reports/site')
    .option('--title <text>', 'site title', 'MoE sparsification leaderboard')
    .action(async (flags: { db: string; out: string; title: string }) => {
      const pages = await buildReport(flags.db, flags.out, flags.title)
      process.stdout.write(`wrote ${pages.length} pages to ${flags.out}; open ${path.resolve(flags.out, 'index.html')}\n`)
    })
}
