import fs from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import { harnessHome } from '../../defaults.ts'
import { fail } from '../../errors.ts'
import { freedBytes, usageBytes } from '../../cache/diskUsage.ts'
import { formatBytes } from '../../util/bytes.ts'
import { AREAS, scanHome, type Area, type CacheEntry, type HomeScan } from '../../cache/homeScan.ts'
import { executePrune, parseDuration, planPrune, samePath } from '../../cache/prune.ts'
import { ResultsStore } from '../../store/resultsStore.ts'
import { closest } from '../../util/suggest.ts'

interface StoreFlags { json?: boolean; db?: string[] }
interface PruneFlags extends StoreFlags {
  variants?: boolean
  graphs?: boolean
  calibration?: boolean
  all?: boolean
  olderThan?: string
  model?: string
  keepStore?: string[]
  yes?: boolean
}

const REBUILT = 'A removed variant folder is prepared again when a sweep needs it (same edits, same scores); removed graphs and calibration statistics are recomputed when needed.'

export function registerCache(program: Command): void {
  const cache = program
    .command('cache')
    .description('Show and free what the harness home holds: prepared variants, built graphs, calibration statistics.')
  cache.addHelpText('after', `
The harness home is ./.harness, or $MOE_HARNESS_HOME (see README "Sweeps and results").
Examples:
  moe-harness cache                                  # what is there, per area, with sizes
  moe-harness cache list --json
  moe-harness cache prune                            # dry run: leftovers of dead processes, damaged folders
  moe-harness cache prune --variants --older-than 7d # dry run: variants unused for a week
  moe-harness cache prune --variants --model ~/models/OLMoE-1B-7B --yes
  moe-harness cache prune --all --keep-store results.sqlite --yes
`)

  const addStoreOption = (cmd: Command) => cmd
    .option('--db <file...>', 'results stores that name the variants (method, ratio) and whose running sweeps hold leases (default: <home>/results.sqlite)')
    .option('--json', 'print the result as JSON (one line)')

  addStoreOption(cache
    .command('list', { isDefault: true })
    // `cache lst` reaches the default command with 'lst' as an argument; the action names it as a command.
    .allowExcessArguments()
    .description('List the harness home per area: variant folders (method, ratio, model, size, last use, state), graphs, calibration, totals.'))
    .addHelpText('after', `
Sizes are bytes on disk; a file hard-linked in several places counts once; an area that is a symbolic
link to another folder (variants on a bigger disk) is listed, counted and pruned through it. A variant folder's
method, parameters and ratio come from the results stores (--db, and any store a running process of
this machine is writing); its model and edits from its own files.
A variant's last use is when a worker last opened it to score (recorded as its edits file's access time,
also on noatime mounts; in a read-only home, the kernel's access time); a graph's is the graph cache's own LRU clock;
calibration statistics' is when a method last read them from the cache (or when they were computed).
States: ok; damaged or incomplete (rebuilt when needed); leftover (of a process that is gone);
live (a running process's, kept). Files the harness did not write are listed as "not ours, kept".
Examples:
  moe-harness cache list
  MOE_HARNESS_HOME=/scratch/harness moe-harness cache list --json
`)
    .action((flags: StoreFlags, list: Command) => {
      if (list.args.length) {
        // Was "too many arguments for 'list'", which never said that `lst` is not a command.
        const near = closest(list.args[0], cache.commands.map(c => c.name()))
        cache.error(`error: unknown command '${list.args[0]}'${near.length ? `\n(Did you mean ${near.join(', ')}?)` : ''}`, { code: 'commander.unknownCommand' })
      }
      const home = checkedHome()
      const scan = scanHome(home, storesOf(home, flags))
      if (flags.json) {
        process.stdout.write(JSON.stringify(listJson(scan)) + '\n')
        return
      }
      process.stdout.write(listText(scan))
    })

  addStoreOption(cache
    .command('prune')
    .description('Remove cached entries of the harness home: a dry run that lists them and the bytes freed, unless --yes.')
    .option('--variants', 'prepared variant folders')
    .option('--graphs', 'built graph cache entries')
    .option('--calibration', 'calibration statistics')
    .option('--all', 'all three areas')
    .option('--older-than <duration>', 'only entries not used for this long: 90s, 30m, 12h, 7d, 2w')
    .option('--model <dir>', 'only the variant folders of this model folder (implies --variants when no area is given)')
    .option('--keep-store <file...>', 'keep the variant folders of the variants these results stores record')
    .option('--yes', 'remove them (default: only list what would go)'))
    .addHelpText('after', `
Without an area, prune removes only leftovers: staging and spill folders of processes that are
gone, dead graph builds, calibration temp files and damaged variant folders. With an area it
removes that area's entries (and its leftovers), filtered by --older-than and --model.
Never removed: anything the harness did not write (listed as "not ours, kept"), results databases,
folders of running processes, variant folders leased by a running sweep of a known store (--db) or
recorded in a store that a running process of this machine is writing (a sweep reads them between
its leases; a sweep on another machine: pass its store with --db), and variant folders or graphs
used in the last minute. A variant folder is renamed aside before it
is deleted, so a running sweep sees it whole or not at all; a removed variant is prepared again
when needed, with the same scores.
Examples:
  moe-harness cache prune                                  # dry run of the leftovers
  moe-harness cache prune --yes
  moe-harness cache prune --variants --older-than 7d --yes
  moe-harness cache prune --variants --model ~/models/OLMoE-1B-7B
  moe-harness cache prune --all --keep-store .harness/results.sqlite --yes
`)
    .action((flags: PruneFlags) => {
      const olderThanMs = flags.olderThan === undefined ? undefined : parseDuration(flags.olderThan)
      const areas = new Set<Area>(flags.all ? AREAS : AREAS.filter(a => flags[a]))
      if (flags.model !== undefined && areas.size === 0) areas.add('variants')
      if (olderThanMs !== undefined && areas.size === 0) {
        fail('INVALID_ARGUMENT', `--older-than ${flags.olderThan} needs an area: add --variants, --graphs, --calibration or --all (without one, prune removes only leftovers of dead processes).`)
      }
      const modelDir = flags.model === undefined ? undefined : path.resolve(flags.model)
      if (modelDir !== undefined && !fs.existsSync(modelDir)) {
        // A deleted model's variants are still selectable by the folder they name; say so rather than fail.
        process.stderr.write(`note: --model ${flags.model} does not exist; selecting the variant folders that name ${modelDir}.\n`)
      }
      const keepStores = (flags.keepStore ?? []).map(s => {
        if (!fs.existsSync(s)) fail('INVALID_ARGUMENT', `--keep-store ${s} does not exist; pass the results database whose variants to keep (e.g. .harness/results.sqlite).`)
        // Opened here first, so a foreign, corrupt or unreadable file is its own STORE_* error before anything is removed.
        new ResultsStore(s, { readonly: true, flag: '--keep-store' }).close()
        return path.resolve(s)
      })
      const home = checkedHome()
      const scan = scanHome(home, [...storesOf(home, flags), ...keepStores])
      const plan = planPrune(scan, { areas, olderThanMs, modelDir, keepStores, now: Date.now() })
      if (modelDir !== undefined) process.stderr.write(unmatchedModelNote(scan, modelDir))
      const result = flags.yes ? executePrune(plan, scan) : undefined
      const foreign = scan.entries.filter(e => e.kind === 'foreign')
      if (flags.json) {
        const removed = result?.removed ?? []
        process.stdout.write(JSON.stringify({
          home, exists: scan.exists, dryRun: !flags.yes, areas: [...areas], olderThanMs: olderThanMs ?? null, model: modelDir ?? null,
          selected: plan.remove.map(entryJson), selectedBytes: plan.freedBytes,
          removed: removed.map(entryJson), freedBytes: result ? freedBytes(removed.map(e => e.usage)) : 0,
          kept: [...plan.kept, ...(result?.skipped ?? [])].map(k => ({ ...entryJson(k.entry), reason: k.reason })),
          failed: (result?.failed ?? []).map(f => ({ ...entryJson(f.entry), error: f.error.message })),
          foreign: foreign.map(entryJson), stores: scan.stores, notes: scan.notes,
        }) + '\n')
      } else {
        process.stdout.write(pruneText(scan, plan, result, !flags.yes, foreign))
      }
      // What could be removed was; the first failure is the command's error (exit 1).
      const failed = result?.failed ?? []
      if (failed.length) {
        const more = failed.length > 1 ? ` (and ${failed.length - 1} more entr${failed.length === 2 ? 'y' : 'ies'} could not be removed)` : ''
        fail('FILE_ACCESS', `${failed[0]!.error.message}${more}`)
      }
    })
}

/**
 * A note when no variant folder of the home names `modelDir` (a mistyped --model selected nothing and
 * looked like a model without variants): the model folders they do name, with the closest first.
 */
function unmatchedModelNote(scan: HomeScan, modelDir: string): string {
  const models = new Map<string, number>()
  for (const e of scan.entries) {
    const dir = e.kind === 'variant' ? e.variant?.modelDir : undefined
    if (dir === undefined) continue
    if (samePath(dir, modelDir)) return ''
    models.set(dir, (models.get(dir) ?? 0) + 1)
  }
  const where = `no variant folder under ${path.join(scan.home, 'variants')} was prepared from ${modelDir}`
  if (!models.size) return `note: ${where} (${scan.entries.some(e => e.kind === 'variant') ? 'none of its variant folders names a readable model folder' : 'it holds no variant folders'}).\n`
  const near = closest(modelDir, [...models.keys()], 1)
  const listed = [...models].sort((a, b) => a[0].localeCompare(b[0])).map(([dir, n]) => `${dir} (${n})`).join(', ')
  return `note: ${where}${near.length ? `; did you mean ${near[0]}?` : '.'} The variant folders here are of: ${listed}.\n`
}

/** The home as the harness finds it (src/defaults.ts harnessHome); a file there is refused. */
function checkedHome(): string {
  const home = harnessHome()
  let st: fs.Stats | undefined
  try { st = fs.statSync(home) } catch { /* absent: nothing cached */ }
  if (st && !st.isDirectory()) {
    fail('FILE_ACCESS', `The harness home ${home} is a file, not a folder; ${process.env.MOE_HARNESS_HOME ? 'set MOE_HARNESS_HOME to a folder' : 'move that file away or set MOE_HARNESS_HOME to a folder'}.`)
  }
  return home
}

function storesOf(home: string, flags: StoreFlags): string[] {
  return flags.db?.length ? flags.db : [path.join(home, 'results.sqlite')]
}

const homeSource = () => (process.env.MOE_HARNESS_HOME ? '$MOE_HARNESS_HOME' : './.harness')

function entryJson(e: CacheEntry) {
  const { usage: _usage, lastUsedMs, ...rest } = e
  return { ...rest, lastUsed: new Date(lastUsedMs).toISOString() }
}

function areaSummary(scan: HomeScan, area: Area) {
  const entries = scan.entries.filter(e => e.area === area && e.kind !== 'foreign')
  const main = entries.filter(e => e.kind === 'variant' || e.kind === 'graph' || e.kind === 'calibration')
  return { entries: main.length, bytes: usageBytes(...entries.map(e => e.usage)), leftovers: entries.filter(e => e.state === 'leftover' || e.state === 'live').length }
}

function listJson(scan: HomeScan) {
  const areas = Object.fromEntries(AREAS.map(a => [a, { ...areaSummary(scan, a), items: scan.entries.filter(e => e.area === a && e.kind !== 'foreign').map(entryJson) }]))
  return {
    home: scan.home, exists: scan.exists, totalBytes: scan.totalBytes, areas,
    stores: scan.entries.filter(e => e.kind === 'store').map(entryJson),
    foreign: scan.entries.filter(e => e.kind === 'foreign').map(entryJson),
    readStores: scan.stores, writing: scan.writing, notes: scan.notes,
  }
}

function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, (now - ms) / 1000)
  if (s < 90) return `${Math.round(s)} s ago`
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} d ago`
}

function table(rows: string[][], indent = '  '): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  return rows.map(r => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n').join('')
}

function variantLine(e: CacheEntry): string {
  const v = e.variant
  if (!v) return e.note ?? ''
  const what = v.recordedAs.length ? v.recordedAs.join('; ') : v.indexedAs ? `${v.indexedAs.join('; ')} (by-id index)` : v.edits ?? ''
  const busy = v.leasedBy ? `in use by ${v.leasedBy}` : v.writtenBy ? `in use (${v.writtenBy})` : ''
  return [v.modelDir ?? '', what, busy, e.note ?? ''].filter(Boolean).join(' · ')
}

function listText(scan: HomeScan): string {
  if (!scan.exists) return `No harness home at ${scan.home} (${homeSource()}): nothing is cached.\n`
  let out = `harness home ${scan.home} (${homeSource()})\n`
  const v = areaSummary(scan, 'variants')
  out += `\nvariants: ${v.entries} folder${v.entries === 1 ? '' : 's'}, ${formatBytes(v.bytes)}\n`
  // Largest first: what to free.
  const rows = scan.entries.filter(e => e.area === 'variants' && e.kind !== 'foreign').sort((a, b) => b.bytes - a.bytes || a.name.localeCompare(b.name))
  if (rows.length) out += table([['SIZE', 'LAST USED', 'STATE', 'FOLDER', 'MODEL · VARIANT'], ...rows.map(e => [formatBytes(e.bytes), ago(e.lastUsedMs), e.kind === 'variant' ? e.state : `${e.kind} ${e.state}`, path.basename(e.path), variantLine(e)])])
  const g = areaSummary(scan, 'graphs')
  const graphs = scan.entries.filter(e => e.kind === 'graph')
  const oldest = graphs.length ? `, least recently used ${ago(Math.min(...graphs.map(e => e.lastUsedMs)))}` : ''
  const leftovers = (area: Area) => scan.entries.filter(e => e.area === area && (e.state === 'leftover' || e.state === 'live'))
    .map(e => `  ${e.name}: ${formatBytes(e.bytes)}, ${e.note ?? e.state}\n`).join('')
  out += `\ngraphs: ${g.entries} entr${g.entries === 1 ? 'y' : 'ies'}, ${formatBytes(g.bytes)}${oldest} (capped: least recently used removed beyond 48 entries or $MOE_HARNESS_GRAPH_CACHE_GB)\n`
  out += leftovers('graphs')
  const c = areaSummary(scan, 'calibration')
  out += `calibration: ${c.entries} entr${c.entries === 1 ? 'y' : 'ies'}, ${formatBytes(c.bytes)}\n`
  out += leftovers('calibration')
  for (const e of scan.entries.filter(e => e.kind === 'store')) out += `store ${e.name}: ${formatBytes(e.bytes)} (never pruned)\n`
  out += foreignText(scan.entries.filter(e => e.kind === 'foreign'))
  for (const n of scan.notes) out += `note: ${n}\n`
  for (const w of scan.writing) out += `note: ${w.store} is being written by pid ${w.pids.join(', ')} (a running sweep): the variants it records are in use\n`
  out += unlabelledText(scan)
  out += `\ntotal ${formatBytes(scan.totalBytes)} (files hard-linked in several places counted once)\n`
  const reclaimable = scan.entries.filter(e => e.state === 'leftover' || e.state === 'damaged' || e.state === 'incomplete')
  if (reclaimable.length) out += `${reclaimable.length} leftover or damaged entr${reclaimable.length === 1 ? 'y' : 'ies'}: \`moe-harness cache prune\` shows what it would remove.\n`
  return out
}

/** Variant folders no store read names: where their method and ratio are to be found. */
function unlabelledText(scan: HomeScan): string {
  const n = scan.entries.filter(e => e.kind === 'variant' && e.variant && !e.variant.recordedAs.length && !e.variant.indexedAs).length
  if (!n) return ''
  const read = scan.stores.length ? `the store${scan.stores.length === 1 ? '' : 's'} read (${scan.stores.join(', ')})` : `a store (none at ${path.join(scan.home, 'results.sqlite')})`
  return `note: ${n} variant folder${n === 1 ? ' is' : 's are'} not recorded in ${read}; pass the sweeps' stores with --db FILE... to see their method, parameters and ratio (a sweep's store is its config's \`store\` or its --db)\n`
}

function foreignText(foreign: CacheEntry[]): string {
  if (!foreign.length) return ''
  const shown = foreign.slice(0, 10).map(e => `${e.name} (${formatBytes(e.bytes)})`).join(', ')
  return `not ours, kept: ${shown}${foreign.length > 10 ? `, and ${foreign.length - 10} more` : ''}\n`
}

function pruneText(scan: HomeScan, plan: ReturnType<typeof planPrune>, result: ReturnType<typeof executePrune> | undefined, dryRun: boolean, foreign: CacheEntry[]): string {
  if (!scan.exists) return `No harness home at ${scan.home} (${homeSource()}): nothing to prune.\n`
  const line = (e: CacheEntry) => `  ${formatBytes(e.bytes).padEnd(9)} ${e.name}${e.variant ? `  ${variantLine(e)}` : e.note ? `  ${e.note}` : ''}\n`
  let out = ''
  if (dryRun) {
    out += plan.remove.length
      ? `dry run: would remove ${plan.remove.length} entr${plan.remove.length === 1 ? 'y' : 'ies'} of ${scan.home}, freeing ${formatBytes(plan.freedBytes)} (pass --yes to remove them):\n`
      : `nothing to remove in ${scan.home}.\n`
    for (const e of plan.remove) out += line(e)
  } else {
    const removed = result!.removed
    out += `removed ${removed.length} entr${removed.length === 1 ? 'y' : 'ies'} of ${scan.home}, freed ${formatBytes(freedBytes(removed.map(e => e.usage)))}:\n`
    for (const e of removed) out += line(e)
  }
  const kept = [...plan.kept, ...(result?.skipped ?? [])]
  if (kept.length) out += `kept:\n${kept.map(k => `  ${k.entry.name}: ${k.reason}\n`).join('')}`
  if (result?.failed.length) out += `could not remove:\n${result.failed.map(f => `  ${f.entry.name}\n`).join('')}`
  out += foreignText(foreign)
  for (const n of scan.notes) out += `note: ${n}\n`
  if ((dryRun ? plan.remove : result!.removed).some(e => e.kind === 'variant')) out += `${REBUILT}\n`
  return out
}
