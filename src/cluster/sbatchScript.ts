// The sbatch array script `moe-harness sweep --slurm` writes (and `--dry-run` prints): readable, with
// every choice commented, so it can be read, edited and submitted by hand like a colleague's script.
import { HARNESS_VERSION } from '../version.ts'
import { harnessHome } from '../defaults.ts'
import path from 'node:path'
import { arraySpec, logDir, shardDbName, shellQuote, skipCellsFile, type ClusterOptions, type ShardJob } from './jobSpec.ts'
import { commentLines } from '../util/commentLines.ts'

export interface ScriptPlan {
  cells: number; cellsPerShard: number[]; store: string
  /** Cells the store already holds complete (not in the plan). */
  held?: number
  /** The memory request (memoryRequest.ts): an `--mem=…` option to add when the user gave none, and the header lines saying why. */
  memory?: { option?: string; notes: string[] }
}

/**
 * The array script for `job`: `#SBATCH` lines first (sbatch stops reading them at the first command),
 * then bash under `set -euo pipefail` that execs one `moe-harness sweep --shard i/N` per task.
 * Options left undefined are left out, so the cluster's defaults apply; memory is requested when
 * `plan.memory` says so (the user's own memory option is among options.sbatch).
 */
export function renderSbatchScript(job: ShardJob, options: ClusterOptions, plan: ScriptPlan): string {
  const q = shellQuote
  const skipName = path.basename(skipCellsFile(job.stateDir))
  const all = arraySpec(Array.from({ length: job.shards }, (_, i) => i))
  const sbatch = [
    `--job-name=moe-harness-sweep`,
    `--array=${all}`,
    `--output=${logDir(job.stateDir)}/shard-%A_%a.log`,
    // A requeued task keeps its job id: append to its log rather than lose the first attempt's.
    `--open-mode=append`,
    `--chdir=${job.workDir}`,
    `--ntasks=1`,
    ...(options.cpusPerTask ? [`--cpus-per-task=${options.cpusPerTask}`] : []),
    ...(plan.memory?.option ? [plan.memory.option] : []),
    ...(options.gpusPerTask ? [`--gpus-per-task=${options.gpusPerTask}`] : []),
    ...(options.time ? [`--time=${options.time}`] : []),
    ...(options.partition ? [`--partition=${options.partition}`] : []),
    ...(options.account ? [`--account=${options.account}`] : []),
    // Trimmed as memoryRequest.ts reads them: ' --mem=8G' became '#SBATCH -- --mem=8G', which sbatch refuses.
    ...options.sbatch.map(s => s.trim()).map(s => (s.startsWith('-') ? s : `--${s}`)),
  ]
  const lines = [
    '#!/bin/bash',
    `# moe-harness ${HARNESS_VERSION} sweep as a Slurm array job, written by \`moe-harness sweep --slurm\`.`,
    `# Plan: ${plan.cells} cells of ${job.config}${plan.held ? ` (${plan.held} more already complete in ${plan.store}, not run again)` : ''},`,
    `# split by a stable hash of each cell into ${job.shards} shards (cells per shard: ${plan.cellsPerShard.join(', ')}).`,
    '# Array task i runs shard i/N into its own SQLite file (SQLite must not be shared over a network',
    '# filesystem); `moe-harness sweep --slurm` merges the shard files into',
    `# ${plan.store} when the array ends, and resubmits only incomplete shards when rerun.`,
    '#',
    `# By hand: sbatch ${q(job.stateDir)}/sweep.sbatch  (all shards, ${all})`,
    `#          sbatch --array=${job.shards - 1} ${q(job.stateDir)}/sweep.sbatch  (shard ${job.shards - 1} only)`,
    `# Logs: ${logDir(job.stateDir)}/shard-<job id>_<shard>.log`,
    ...(plan.memory?.notes.length ? ['#', ...plan.memory.notes.flatMap(l => commentLines(l))] : []),
    ...sbatch.map(s => `#SBATCH ${s}`),
    '',
    'set -euo pipefail',
    '',
    `SHARDS=${job.shards}`,
    `STATE_DIR=${q(job.stateDir)}`,
    'SHARD="${SLURM_ARRAY_TASK_ID:?run this script with sbatch --array}"',
    '',
    'echo "moe-harness shard ${SHARD}/${SHARDS}: job ${SLURM_ARRAY_JOB_ID}_${SHARD} on $(hostname), started $(date -Is)"',
    'mkdir -p "${STATE_DIR}/shards"',
    '# The harness home of the submitting command, resolved (calibration, prepared variants, graphs), so shards',
    '# reuse its cache and each other\'s: a task runs in the config\'s folder, where ./.harness (or a relative',
    '# $MOE_HARNESS_HOME) would be another folder.',
    `export MOE_HARNESS_HOME=${q(harnessHome())}`,
    `# Cells the store already held when \`moe-harness sweep --slurm\` submitted (it writes ${skipName}) are`,
    '# not scored again; cells this shard already stored are skipped too, so a requeued task continues.',
    'set --',
    `if [[ -f "\${STATE_DIR}/${skipName}" ]]; then set -- --skip-cells "\${STATE_DIR}/${skipName}"; fi`,
    `exec node ${q(job.bin)} sweep \\`,
    `  --config ${q(job.config)} \\`,
    '  --shard "${SHARD}/${SHARDS}" \\',
    `  --db "\${STATE_DIR}/shards/${shardDbName('${SHARD}', '${SHARDS}')}" \\`,
    `  ${[...job.sweepArgs.map(q), '"$@"'].join(' ')}`,
    '',
  ]
  return lines.join('\n')
}
