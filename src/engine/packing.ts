// Packs scoring requests into right-padded batches for the scoring graph. A request is a shared
// prefix plus any number of continuation branches; all branches of a request share one pass over
// the prefix (branch_ids tell the graph which tokens may see which).
import { fail } from '../errors.ts'

export interface ScoreRequest {
  /** Tokens every branch is conditioned on (at least one token). */
  prefix: readonly number[]
  /** Continuations scored after the prefix; each sees the prefix and its own earlier tokens only. */
  branches: readonly (readonly number[])[]
  /** Score prefix tokens from this index on (log p(prefix[i] | prefix[..i-1]) for i >= it); default: none. */
  scorePrefixFrom?: number
}

export interface ScoreResult {
  /** log p of prefix[i] for i from scorePrefixFrom to prefix.length - 1. */
  prefix: number[]
  prefixGreedy: boolean[]
  /** log p of every continuation token, per branch. */
  branches: number[][]
  branchGreedy: boolean[][]
}

export interface PackedBatch {
  rows: number
  width: number
  inputIds: BigInt64Array
  positionIds: BigInt64Array
  branchIds: BigInt64Array
  scorePositions: BigInt64Array
  scoreTargets: BigInt64Array
  /** Where each score lands: [request index, branch (-1 = prefix), token index]. */
  slots: Int32Array
}

/**
 * Tokens the graph processes for a request. The last token of a sequence is only ever a target,
 * never an input, so it is left out: without branches the prefix runs as prefix.length - 1 inputs,
 * and each branch adds branch.length - 1 (a one-token choice costs nothing beyond the context).
 */
export function packedLength(r: ScoreRequest): number {
  return r.branches.length === 0 ? r.prefix.length - 1 : r.prefix.length + r.branches.reduce((n, b) => n + b.length - 1, 0)
}

export function validateRequest(r: ScoreRequest, vocabSize: number, maxLength: number | null): void {
  if (r.prefix.length === 0) fail('INVALID_ARGUMENT', 'A scoring request needs at least one prefix token (lm-eval uses the BOS/EOS prefix token for empty contexts).')
  const check = (t: number) => {
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
      fail('TOKEN_OUT_OF_RANGE', `Token id ${t} is outside the model's vocabulary 0..${vocabSize - 1}; check the ids or the tokenizer.`)
    }
  }
  r.prefix.forEach(check)
  for (const b of r.branches) b.forEach(check)
  if (r.branches.length === 0 && r.prefix.length < 2) fail('INVALID_ARGUMENT', 'A request without continuations needs at least two prefix tokens.')
  if (r.branches.some(b => b.length === 0)) fail('INVALID_ARGUMENT', 'A continuation branch needs at least one token.')
  const longest = r.branches.length === 0 ? r.prefix.length - 1 : r.prefix.length - 1 + Math.max(...r.branches.map(b => b.length))
  if (maxLength !== null && longest > maxLength) {
    fail('SEQUENCE_TOO_LONG', `A sequence of ${longest} tokens exceeds the model's sliding_window of ${maxLength}; sliding-window attention is not implemented (within ${maxLength} tokens it equals full attention). Score at most ${maxLength} tokens per sequence: eval --max-length ${maxLength} cuts rolling windows there; a sweep scores documents at the model's context, so give it tasks whose requests are shorter (multiple-choice tasks are), or a config without sliding_window.`)
  }
}

/**
 * Groups requests (longest first, as lm-eval does) into batches of at most `maxTokens` padded
 * tokens. The batch composition never changes a score: padding and other rows are masked exactly.
 */
export function planBatches(requests: readonly ScoreRequest[], maxTokens: number): number[][] {
  const order = requests.map((r, i) => ({ i, len: packedLength(r) })).sort((a, b) => b.len - a.len || a.i - b.i)
  const batches: number[][] = []
  let current: number[] = []
  let width = 0
  for (const { i, len } of order) {
    const w = Math.max(width, len)
    if (current.length && w * (current.length + 1) > maxTokens) {
      batches.push(current)
      current = []
      width = 0
    }
    current.push(i)
    width = Math.max(width, len)
  }
  if (current.length) batches.push(current)
  return batches
}

export function packBatch(requests: readonly ScoreRequest[], indices: readonly number[]): PackedBatch {
  const width = Math.max(...indices.map(i => packedLength(requests[i])))
  const rows = indices.length
  const inputIds = new BigInt64Array(rows * width)
  const positionIds = new BigInt64Array(rows * width)
  const branchIds = new BigInt64Array(rows * width).fill(-1n)
  const positions: number[] = []
  const targets: number[] = []
  const slots: number[] = []
  indices.forEach((ri, row) => {
    const r = requests[ri]
    const base = row * width
    const P = r.prefix.length
    const inputs = r.branches.length === 0 ? P - 1 : P
    for (let t = 0; t < inputs; t++) {
      inputIds[base + t] = BigInt(r.prefix[t])
      positionIds[base + t] = BigInt(t)
      branchIds[base + t] = 0n
    }
    for (let t = Math.max(1, r.scorePrefixFrom ?? P); t < P; t++) {
      positions.push(base + t - 1)
      targets.push(r.prefix[t])
      slots.push(ri, -1, t)
    }
    let offset = P
    r.branches.forEach((branch, k) => {
      // branch[t] is predicted from the prefix's last token (t = 0) or from branch[t - 1].
      for (let t = 0; t < branch.length; t++) {
        positions.push(t === 0 ? base + P - 1 : base + offset + t - 1)
        targets.push(branch[t])
        slots.push(ri, k, t)
      }
      for (let t = 0; t + 1 < branch.length; t++) {
        inputIds[base + offset + t] = BigInt(branch[t])
        positionIds[base + offset + t] = BigInt(P + t)
        branchIds[base + offset + t] = BigInt(k + 1)
      }
      offset += branch.length - 1
    })
  })
  return {
    rows, width, inputIds, positionIds, branchIds,
    scorePositions: BigInt64Array.from(positions.map(BigInt)),
    scoreTargets: BigInt64Array.from(targets.map(BigInt)),
    slots: Int32Array.from(slots),
  }
}

export function emptyResult(r: ScoreRequest): ScoreResult {
  const from = Math.max(1, r.scorePrefixFrom ?? r.prefix.length)
  const n = Math.max(0, r.prefix.length - from)
  return {
    prefix: new Array(n).fill(NaN),
    prefixGreedy: new Array(n).fill(false),
    branches: r.branches.map(b => new Array(b.length).fill(NaN)),
    branchGreedy: r.branches.map(b => new Array(b.length).fill(false)),
  }
}

/** Writes one batch's outputs into the per-request results. */
export function scatterBatch(requests: readonly ScoreRequest[], results: ScoreResult[], batch: PackedBatch, logprobs: Float32Array, greedy: Uint8Array): void {
  for (let s = 0; s < logprobs.length; s++) {
    const ri = batch.slots[3 * s], branch = batch.slots[3 * s + 1], t = batch.slots[3 * s + 2]
    const res = results[ri]
    if (branch < 0) {
      const from = Math.max(1, requests[ri].scorePrefixFrom ?? requests[ri].prefix.length)
      res.prefix[t - from] = logprobs[s]
      res.prefixGreedy[t - from] = greedy[s] !== 0
    } else {
      res.branches[branch][t] = logprobs[s]
      res.branchGreedy[branch][t] = greedy[s] !== 0
    }
  }
}
