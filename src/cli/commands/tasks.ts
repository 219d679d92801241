import type { Command } from 'commander'
import { defaultDataDir } from '../../paths.ts'
import { readRecords } from '../../tasks/records.ts'
import { dataFileOf, loadAllTasks } from '../../tasks/registry.ts'

export function registerTasks(program: Command): void {
  program
    .command('tasks')
    .description('List the tasks with their kind, metrics, item counts and where their data is.')
    .option('--data-dir <dir>', 'folder with local copies of the standard datasets (default: $MOE_HARNESS_DATA or ./data)')
    .option('--json', 'print the list as JSON')
    .action(async (flags: { dataDir?: string; json?: boolean }) => {
      const dataDir = flags.dataDir ?? defaultDataDir()
      const rows = []
      for (const task of await loadAllTasks()) {
        const file = dataFileOf(task, dataDir)
        const items = file ? (await readRecords(file)).length : null
        rows.push({ name: task.name, version: task.version, kind: task.kind, builtIn: Boolean(task.data.builtIn), items, metrics: task.metrics, primary: task.primaryMetric, file: file ?? null, howToGet: file ? undefined : task.data.howToGet, description: task.description })
      }
      if (flags.json) {
        process.stdout.write(JSON.stringify(rows) + '\n')
        return
      }
      const w = Math.max(...rows.map(r => r.name.length))
      for (const r of rows) {
        const count = r.items === null ? 'data missing' : `${r.items} items`
        process.stdout.write(`${r.name.padEnd(w)}  ${r.kind.padEnd(15)}  ${count.padEnd(12)}  ${r.primary.padEnd(16)}  ${r.builtIn ? 'built-in' : r.file ?? ''}\n`)
        if (r.items === null) process.stdout.write(`${' '.repeat(w)}  → ${r.howToGet}\n`)
      }
    })
}
