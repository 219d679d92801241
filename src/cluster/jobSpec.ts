// What a cluster job runs: one shard of the sweep plan per array task / completion index, each into
// its own SQLite file. Shared by the Slurm script and the Kubernetes manifest so both run the same thing.
import fs from 'node:fs'
import path from 'node:path'
import { fail } from '../errors.ts'

export interface ClusterOptions {
  partition?: string
  account?: string
  /** Slurm time limit per array task ('HH:MM:SS', 'D-HH:MM:SS' or minutes). */
  time?: string
  gpusPerTask?: number
  cpusPerTask?: number
  /** Extra `#SBATCH` options, e.g. '--mem=32G'. */
  sbatch: string[]
  /** Kubernetes container image and the PersistentVolumeClaim that holds the project. */
  image: string
  pvc: string
  /**
   * Kubernetes: the memory each pod requests and is limited to, a quantity such as '32Gi' (validated:
   * util/k8sQuantity.ts), and where it was given ('--memory', 'cluster.memory'); absent = what one
   * worker needs (k8sMemory.ts). Slurm does not read it: there --sbatch --mem=<size> overrides.
   */
  memory?: { value: string; from: string }
}

/** Everything an array task needs: absolute paths on the shared filesystem plus the sweep flags. */
export interface ShardJob {
  /** Shards = array tasks. */
  shards: number
  /** Folder the job runs in (the config's folder: relative paths in the config resolve there). */
  workDir: string
  /** The CLI entry (bin/moe-harness.mjs of this checkout). */
  bin: string
  config: string
  /** Folder of the per-shard SQLite files and of the logs. */
  stateDir: string
  /** Extra sweep flags passed through (e.g. --workers 2 --threads 1). */
  sweepArgs: string[]
}

export const shardDbName = (index: number | string, shards: number | string) => `shard-${index}-of-${shards}.sqlite`
export const shardDb = (job: Pick<ShardJob, 'stateDir' | 'shards'>, index: number) => path.join(job.stateDir, 'shards', shardDbName(index, job.shards))
export const logDir = (stateDir: string) => path.join(stateDir, 'logs')
/** The log Slurm writes for array task `task` of job `jobId` (the script's --output pattern). */
export const slurmLog = (stateDir: string, jobId: string, task: number) => path.join(logDir(stateDir), `shard-${jobId}_${task}.log`)

export { shellQuote } from '../util/shellQuote.ts'

/** Renders a contiguous list of indices compactly for `--array` (0-3,5,7-8). */
export function arraySpec(indices: number[]): string {
  const sorted = [...new Set(indices)].sort((a, b) => a - b)
  const parts: string[] = []
  for (let i = 0; i < sorted.length; i++) {
    let j = i
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`)
    i = j
  }
  return parts.join(',')
}

/**
 * The cells the main store already held when `sweep --slurm` last submitted, as plan.ts cell keys; each
 * array task passes it as `--skip-cells` so a shard never scores them again in its own file.
 */
export const skipCellsFile = (stateDir: string) => path.join(stateDir, 'complete-cells.json')

export interface SkipCells { store: string; cells: string[] }

/** Reads a `--skip-cells` file. Errors: INVALID_ARGUMENT naming the file when it is missing or not one. */
export function readSkipCells(file: string): Set<string> {
  let parsed: unknown
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    fail('INVALID_ARGUMENT', `--skip-cells ${file}: ${(e as Error).message}. The file is written by \`moe-harness sweep --slurm\` (the cells its store already holds); rerun that command, or drop --skip-cells.`)
  }
  const cells = (parsed as Partial<SkipCells> | null)?.cells
  if (!Array.isArray(cells) || !cells.every(c => typeof c === 'string')) {
    fail('INVALID_ARGUMENT', `--skip-cells ${file} has no 'cells' list of cell keys; it is written by \`moe-harness sweep --slurm\`: rerun that command, or drop --skip-cells.`)
  }
  return new Set(cells)
}
