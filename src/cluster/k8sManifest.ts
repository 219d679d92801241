// The same shard plan as a Kubernetes Indexed Job: completion index i runs shard i/N, like Slurm's
// SLURM_ARRAY_TASK_ID. Not tested against a cluster; the README says what the user must provide.
import path from 'node:path'
import { shardDbName, shellQuote, type ClusterOptions, type ShardJob } from './jobSpec.ts'

const yamlString = (s: string) => JSON.stringify(s) // JSON strings are valid YAML scalars

/**
 * `mountPath` is where the claim `options.pvc` (holding the project, the model and the results folder)
 * appears in the container; paths under `job.workDir` are rewritten relative to it.
 */
export function renderK8sManifest(job: ShardJob, options: ClusterOptions, mountPath = '/workspace'): string {
  const inPod = (p: string) => {
    const rel = path.relative(job.workDir, p)
    return rel.startsWith('..') || path.isAbsolute(rel) ? p : path.posix.join(mountPath, ...rel.split(path.sep))
  }
  const db = `${inPod(job.stateDir)}/shards/${shardDbName('${JOB_COMPLETION_INDEX}', job.shards)}`
  const command = [
    `mkdir -p ${shellQuote(inPod(job.stateDir))}/shards`,
    `exec node ${shellQuote(inPod(job.bin))} sweep --config ${shellQuote(inPod(job.config))} --shard "\${JOB_COMPLETION_INDEX}/${job.shards}" --db "${db}"${job.sweepArgs.length ? ' ' + job.sweepArgs.map(shellQuote).join(' ') : ''}`,
  ].join(' && ')
  const resources: string[] = []
  if (options.cpusPerTask) resources.push(`cpu: "${options.cpusPerTask}"`)
  if (options.gpusPerTask) resources.push(`nvidia.com/gpu: "${options.gpusPerTask}"`)
  return [
    '# moe-harness sweep as a Kubernetes Indexed Job, written by `moe-harness sweep --k8s-manifest`.',
    `# Completion index i runs shard i/${job.shards} into its own SQLite file under ${inPod(job.stateDir)}/shards;`,
    '# when the job is complete, merge them: moe-harness merge <shard files> --out <store>.',
    `# Needs: image ${options.image} able to run the project (Node 20, npm ci done), and the`,
    `# PersistentVolumeClaim '${options.pvc}' holding the project folder, mounted at ${mountPath}.`,
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
    `          workingDir: ${yamlString(inPod(job.workDir))}`,
    '          command: ["/bin/bash", "-c"]',
    `          args: [${yamlString(`set -euo pipefail; ${command}`)}]`,
    ...(resources.length ? ['          resources:', '            limits:', ...resources.map(r => `              ${r}`)] : []),
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
