// The kernel's per-process limit on memory mappings (Linux vm.max_map_count) and how many this process
// holds. onnxruntime maps each external-data initializer of a session separately, so a many-expert
// checkpoint costs one mapping per weight tensor per session, and every pool worker is a thread of this
// one process: the limit, not memory, is what a deep many-expert model runs out of first. Past it, an
// mmap fails and V8 (which cannot map its next heap page either) aborts the process with a misleading
// "JavaScript heap out of memory".
import fs from 'node:fs'

/** Where the limit and this process's mappings are read (Linux); tests pass other files. */
export interface MapSources {
  /** Default /proc/sys/vm/max_map_count. */
  limitFile?: string
  /** Default /proc/self/maps (one line per mapping). */
  mapsFile?: string
}

/** The fix, as Elasticsearch and OpenSearch document it for the same limit. */
export const MAP_COUNT_FIX = 'sudo sysctl -w vm.max_map_count=262144 (persist it in /etc/sysctl.d/)'

/** Mappings this process may hold (vm.max_map_count); undefined when there is no such file (not Linux): no known limit. */
export function mapCountLimit(sources: MapSources = {}): number | undefined {
  const text = readText(sources.limitFile ?? '/proc/sys/vm/max_map_count')?.trim()
  return text && /^\d+$/.test(text) ? Number(text) : undefined
}

/** Mappings this process holds now (lines of /proc/self/maps); undefined when unreadable (not Linux). */
export function mapCount(sources: MapSources = {}): number | undefined {
  const text = readText(sources.mapsFile ?? '/proc/self/maps')
  if (text === undefined) return undefined
  let lines = 0
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines++
  return text.length > 0 && !text.endsWith('\n') ? lines + 1 : lines
}

/** Fraction of the limit at or above which a crash is blamed on mappings rather than on the heap it reports. */
export const NEAR_MAP_LIMIT = 0.8

/**
 * When this process's mappings are near the limit (>= NEAR_MAP_LIMIT of it: a dead thread's own heap mappings are gone by the time this is read): a sentence naming both
 * figures and the fix, for a crash that reports "out of memory" where an mmap was refused; else
 * undefined (no limit known, or far from it). Without an argument, this process's figures (mapCount,
 * mapCountLimit); an argument is used as given (a missing limit: none).
 */
export function nearMapLimit({ count, limit }: { count?: number; limit?: number } = { count: mapCount(), limit: mapCountLimit() }): string | undefined {
  if (count === undefined || limit === undefined || count < NEAR_MAP_LIMIT * limit) return undefined
  return `this process holds ${count} memory mappings of the kernel's vm.max_map_count ${limit} (onnxruntime maps each weight tensor once per session, and every pool worker is a thread of this process), so a mapping was refused and the allocator reported it as out of memory; raise the limit: ${MAP_COUNT_FIX}, or use fewer workers (--workers).`
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}
