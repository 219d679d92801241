// The same shard plan as a Kubernetes Indexed Job: completion index i runs shard i/N, like Slurm's
// SLURM_ARRAY_TASK_ID. Not tested against a cluster; the README says what the user must provide.
import path from 'node:path'
import { shardDbName, shellQuote, type ClusterOptions, type ShardJob } from './jobSpec.ts'
import type { K8sMemory } from './k8sMemory.ts'
import { commentLines } from '../util/commentLines.ts'

const yamlString = (s: string) => JSON.stringify(s) // JSON strings are valid YAML scalars

/** A path the job reads or writes, and what it is (for the message when the pod cannot see it). */
export interface JobPath { what: string; path: string }

/**
 * The paths of `used` (plus the job's own: the project checkout, the config, the shard folder) that lie
 * outside `job.workDir`, the folder the claim holds: the pod cannot see them, so a shard would fail
 * (a missing checkout, config or model) or write its results to the pod's ephemeral disk (the shard folder).
 */
export function pathsOutsideMount(job: ShardJob, used: readonly JobPath[]): JobPath[] {
  const all: JobPath[] = [
    { what: 'the project checkout (bin/moe-harness.mjs)', path: job.bin },
    { what: 'the config', path: job.config },
    { what: 'the shard files (the store\'s folder)', path: job.stateDir },
    ...used,
  ]
  return all.filter(p => {
    const rel = path.relative(job.workDir, path.resolve(p.path))
    return rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)
  })
}

/**
 * The claim `options.pvc` must hold the config's folder (`job.workDir`) and is mounted at the same path
 * in the pod, so every path (absolute ones written in the config too) means the same file there.
 * `used`: the other paths the job needs (models, data folder); those outside the folder are named in
 * WARNING lines at the top (the CLI prints them too). A warning, not an error: the manifest is a
 * starting point people edit (more volumes, the project baked into the image), which we cannot see.
 * `memory`: the container's memory request and limit, one quantity for both (the scheduler places a pod
 * only where that much is free, and the pool in it sizes itself to the same figure, its cgroup limit),
 * and the header notes that explain it; no memory lines without it.
 */
export function renderK8sManifest(job: ShardJob, options: ClusterOptions, used: readonly JobPath[] = [], memory?: K8sMemory): string {
  const mountPath = job.workDir
  const outside = pathsOutsideMount(job, used)
  const db = `${job.stateDir}/shards/${shardDbName('${JOB_COMPLETION_INDEX}', job.shards)}`
  const command = [
    `mkdir -p ${shellQuote(job.stateDir)}/shards`,
    `exec node ${shellQuote(job.bin)} sweep --config ${shellQuote(job.config)} --shard "\${JOB_COMPLETION_INDEX}/${job.shards}" --db "${db}"${job.sweepArgs.length ? ' ' + job.sweepArgs.map(shellQuote).join(' ') : ''}`,
  ].join(' && ')
  const limits: string[] = []
  if (options.cpusPerTask) limits.push(`cpu: "${options.cpusPerTask}"`)
  if (options.gpusPerTask) limits.push(`nvidia.com/gpu: "${options.gpusPerTask}"`)
  const requests: string[] = []
  if (memory) {
    requests.push(`memory: ${yamlString(memory.quantity)}`)
    limits.push(`memory: ${yamlString(memory.quantity)}`)
  }
  const block = (name: string, entries: string[]) => (entries.length ? [`            ${name}:`, ...entries.map(r => `              ${r}`)] : [])
  const resources = [...block('requests', requests), ...block('limits', limits)]
  return [
    '# moe-harness sweep as a Kubernetes Indexed Job, written by `moe-harness sweep --k8s-manifest`.',
    ...commentLines(`Completion index i runs shard i/${job.shards} into its own SQLite file under ${job.stateDir}/shards; when the job is complete, merge them: moe-harness merge <shard files> --out <store>.`),
    ...commentLines(`Needs: image ${options.image} able to run the project (Node 20, npm ci done), and the PersistentVolumeClaim '${options.pvc}' holding the folder ${mountPath} (the config's folder, with the project checkout, the models and the store inside it), mounted at the same path so every path stays valid.`),
    ...outside.flatMap(p => commentLines(`WARNING: the pod cannot see ${p.what}, ${p.path}: it is outside ${mountPath}; move it inside, or mount it yourself.`)),
    ...(memory?.notes ?? []).flatMap(n => commentLines(n)),
    'apiVersion: batch/v1',
    'kind: Job',
    'metadata:',
    '  name: moe-harness-sweep',
    'spec:',
    '  completionMode: Indexed',
    `  completions: ${job.shards}`,
    `  parallelism: ${job.shards}`,
    `  backoffLimit: ${job.shards * 2}`,
    '  template:',
    '    spec:',
    '      restartPolicy: Never',
    '      containers:',
    '        - name: shard',
    `          image: ${yamlString(options.image)}`,
    `          workingDir: ${yamlString(job.workDir)}`,
    '          command: ["/bin/bash", "-c"]',
    `          args: [${yamlString(`set -euo pipefail; ${command}`)}]`,
    ...(resources.length ? ['          resources:', ...resources] : []),
    '          volumeMounts:',
    '            - name: workspace',
    `              mountPath: ${yamlString(mountPath)}`,
    '      volumes:',
    '        - name: workspace',
    '          persistentVolumeClaim:',
    `            claimName: ${yamlString(options.pvc)}`,
    '',
  ].join('\n')
}
