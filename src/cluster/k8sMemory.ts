// The memory each pod of `sweep --k8s-manifest` requests and is limited to. A pod without a request is
// scheduled onto any node whether the model fits there or not, and under a namespace LimitRange gets
// its small default limit and is OOM-killed mid-sweep; with a limit, the pod's cgroup memory.max is
// what the pool inside it sizes itself against (memoryFit.ts availableMemoryBytes). So the manifest
// asks for what one worker needs (memoryRequest.ts taskMemoryNeed), unless the user gave a size.
import { formatBytes } from '../util/bytes.ts'
import { parseK8sMemory } from '../util/k8sQuantity.ts'
import type { ClusterOptions } from './jobSpec.ts'
import { describeNeed, workersNote, type MemoryNeed } from './memoryRequest.ts'

const GIB = 2 ** 30

/** `bytes` rounded up to whole GiB as a Kubernetes quantity ('18Gi'), as slurmSize rounds for sbatch. At least 1Gi. */
export function k8sSize(bytes: number): string {
  return `${Math.max(1, Math.ceil(bytes / GIB))}Gi`
}

/** A size the user gave: the quantity as written (validated: parseK8sMemory), and where ('--memory', 'cluster.memory'). */
export type MemoryOverride = NonNullable<ClusterOptions['memory']>

/** What the manifest's container requests and is limited to, and what to tell the user. */
export interface K8sMemory {
  /** Absent when the models were not opened (a size was given: givenK8sMemory). */
  need?: MemoryNeed
  /** resources.requests.memory and resources.limits.memory: the override as written, else k8sSize(need.bytes). */
  quantity: string
  override?: MemoryOverride
  /** Lines for the manifest's header (without the leading '# '). */
  notes: string[]
  /** The override is below the need: one line for stderr (without 'warning: '). */
  warning?: string
}

/**
 * The memory of each pod for a sweep needing `need` (one worker, weights mapped: the manifest sets no
 * environment, so the pods run with MOE_HARNESS_WEIGHTS unset); `inMemory` is the need with
 * MOE_HARNESS_WEIGHTS=memory, named in the notes for an image that sets it. With `override` (a valid
 * quantity) that size is used, with a warning when it is below the need: the user may know their
 * cluster better. `workers`: the config's pool.workers (after --workers), for the notes. Pure.
 */
export function k8sMemory(need: MemoryNeed, inMemory: MemoryNeed, override: MemoryOverride | undefined, workers: number): K8sMemory {
  const size = k8sSize(need.bytes)
  const parts = describeNeed(need)
  const how = 'override with --memory <size> (or cluster.memory in the config), a Kubernetes quantity such as 32Gi'
  const notes = override
    ? [`Memory: ${override.from} ${override.value} as given, as the request and the limit of each pod; one worker of the pool in each pod needs ${formatBytes(need.bytes)} (${size}): ${parts}.`]
    : [`Memory: requests and limits of ${size} are what one worker of the pool in each pod needs: ${parts} = ${formatBytes(need.bytes)}, rounded up to whole GiB ` +
      `(the pool's own estimate, src/pool/memoryFit.ts; the limit is the memory the pool in the pod sees). Without a request a pod may land on a node ` +
      `too small for the model, and a namespace's default limit can kill it for memory; ${how}.`]
  if (k8sSize(inMemory.bytes) !== size) {
    notes.push(`The pods run with the weights mapped (the manifest sets no environment); an image that sets MOE_HARNESS_WEIGHTS=memory needs --memory ${k8sSize(inMemory.bytes)}.`)
  }
  if (workers > 1) notes.push(workersNote(need, workers, 'pod', k8sSize))
  if (!override) return { need, quantity: size, notes }
  const bytes = parseK8sMemory(override.value)!
  if (bytes >= need.bytes) return { need, quantity: override.value, override, notes }
  notes.push(`WARNING: ${override.from} ${override.value} = ${formatBytes(bytes)} per pod is below that need; drop it for ${size}.`)
  const warning = `${override.from} ${override.value} gives each pod ${formatBytes(bytes)}, below the ${formatBytes(need.bytes)} (${size}) one worker of the pool needs (${parts}): ` +
    `the pod will likely be killed for memory, or its pool find that even one worker does not fit. ` +
    `If the cluster needs less than this estimate, keep it; else drop ${override.from} and the manifest requests ${size}.`
  return { need, quantity: override.value, override, notes, warning }
}

/** The memory of each pod when the user gave its size and the models were not opened to compute a need (they may exist only on the pods' volume). */
export function givenK8sMemory(override: MemoryOverride): K8sMemory {
  return { quantity: override.value, override, notes: [`Memory: ${override.from} ${override.value} as given, as the request and the limit of each pod (the models were not opened here to compare it with what a worker needs).`] }
}
