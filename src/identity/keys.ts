// Identity: what makes two results the same. Every key the harness stores or caches by is derived
// here (run, scoring, variant, variant content, calibration, variant folder), with the version
// constants that invalidate them, so "may this stored result be reused?" has one answer.
// Low altitude: node:crypto, types, the version and the graph builder's source hash (sourceFingerprint.ts);
// callers pass plain values (fingerprints, hashes, names).
import crypto from 'node:crypto'
import type { VariantEdits } from '../edits/variantEdits.ts'
import { HARNESS_VERSION } from '../version.ts'
import { canonicalJson } from '../util/canonicalJson.ts'
import { graphBuilderCode } from './sourceFingerprint.ts'

export { HARNESS_VERSION }

/** Bump when what the model fingerprint covers changes (every stored key changes with it); src/model/fingerprint.ts. */
export const FINGERPRINT_VERSION = 2

/** Bump when scoring semantics change (request building, metrics): part of every run's key. */
// 2: lm-eval's special tokens and prefix rules, ("", delimiter + choice) unconditional requests,
// first-index is_greedy, code-point choice lengths (H6, issue 9 §5-§7).
// 3: token-perplexity windows default to 2048 tokens, not the model's context (changes scores of models
// whose context exceeds 2048); also re-scores results from before the config.json fixes of 2026-11-30
// (rope_parameters per layer type, num_local_experts on Qwen3-MoE, swish), which run keys do not cover.
export const SCORING_VERSION = 3

/** Bump when the meaning of a built variant changes (graph semantics, edit encoding): part of every variant id. */
export const BUILD_FORMAT_VERSION = 1

/** Bump when the calibration statistics' definitions change: part of every calibration cache key. */
export const STATS_VERSION = 1

/** sha256 hex of `text`, cut to `length` characters (the lengths are part of the stored formats). */
function digest(text: string, length: number): string {
  return crypto.createHash('sha256').update(text).digest('hex').slice(0, length)
}

/**
 * What makes two stored runs the same result (the `runs` table's unique key; the sweep skips a cell
 * whose key is stored complete). `data_sha256` is the sha256 of the task's data file (its bytes, not
 * its path): replacing the file with other content re-scores, an identical copy elsewhere does not.
 * Rows from before schema 5 carry '' there and so never match a new key.
 */
export interface RunKey {
  model_id: string
  content_hash: string
  task: string
  task_version: number
  subset: string
  scoring_key: string
  data_sha256: string
}

export function runKey(k: { modelId: string; contentHash: string; task: string; taskVersion: number; subset: string; scoringKey: string; dataSha256: string }): RunKey {
  return { model_id: k.modelId, content_hash: k.contentHash, task: k.task, task_version: k.taskVersion, subset: k.subset, scoring_key: k.scoringKey, data_sha256: k.dataSha256 }
}

/** A run key as one string (lease cells, in-process maps): every field, in a fixed order. */
export function runKeyText(k: RunKey): string {
  return JSON.stringify([k.model_id, k.content_hash, k.task, k.task_version, k.subset, k.scoring_key, k.data_sha256])
}

/**
 * How requests are scored, apart from the model: scoring version, max length (the model's context),
 * device and onnxruntime version. 16 hex characters.
 */
export function scoringKey(s: { maxLength: number; device: string; ortVersion: string }): string {
  return digest(JSON.stringify({ v: SCORING_VERSION, maxLength: s.maxLength, device: s.device, ort: s.ortVersion }), 16)
}

/**
 * A planned variant's id (its `variants` row): model fingerprint, method name and file hash, resolved
 * parameters, the calibration key when it calibrates, and the procedure when sequential (only then,
 * so one-pass ids are unchanged). 24 hex characters.
 */
export function variantKey(v: { modelId: string; method: string; methodCode: string; params: unknown; calibrationKey: string | null; sequential: boolean }): string {
  return digest(JSON.stringify({
    v: BUILD_FORMAT_VERSION, model: v.modelId, method: v.method, code: v.methodCode, params: v.params, calibration: v.calibrationKey,
    ...(v.sequential ? { procedure: 'sequential' } : {}),
  }), 24)
}

/**
 * The seed of a method's `ctx.rng`: the variant key without the method's code hash, so editing the
 * code (a comment, a helper it imports) does not redraw a random method's choices; what it is asked
 * to do (model, method, parameters, calibration, procedure) does. 24 hex characters.
 */
export function methodSeedKey(v: { modelId: string; method: string; params: unknown; calibrationKey: string | null; sequential: boolean }): string {
  return digest(JSON.stringify({
    seed: 1, model: v.modelId, method: v.method, params: v.params, calibration: v.calibrationKey,
    ...(v.sequential ? { procedure: 'sequential' } : {}),
  }), 24)
}

/** The id recorded for a variant that failed before it had edits: a hash of its spec. */
export function failedVariantKey(spec: unknown): string {
  return `failed-${digest(JSON.stringify(spec), 20)}`
}

/**
 * The content hash of a variant's edits (24 hex characters): what the model computes, not how it was
 * made, so identical edits share results (every ratio-0 variant is the unpruned model, scored once).
 * Layers in index order, each as its hooks' JSON with keys sorted (nested binding maps included) and
 * its novice vectors' bytes; then override tensors by name, each by `tensorDigest` (the sha256 of its
 * float32 values for the content hash: edits/overrideTensor.ts overrideDigest, so a tensor hashes alike
 * in memory and stored; graphStore.ts passes file identities instead). Empty layers contribute nothing.
 * (Before 2026-11-30 the override values were hashed inline; a variant prepared before that
 * keeps its stored hash, as the sweep reuses a valid folder by variant id.)
 */
export function editsContentHash(edits: VariantEdits, tensorDigest: (t: VariantEdits['overrides'][string]) => string): string {
  const h = crypto.createHash('sha256')
  const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
  for (const l of Object.keys(edits.layers).map(Number).sort((a, b) => a - b)) {
    const hooks = edits.layers[l]
    if (Object.keys(hooks).length === 0) continue
    const { novices, ...rest } = hooks
    // Keys sorted at the top level by building the object in order: a replacer array (the old form)
    // also filtered the keys of nested objects, so `bindings` hashed as {} whatever it held.
    const sorted = Object.fromEntries(Object.keys(rest).sort().map(k => [k, (rest as Record<string, unknown>)[k]]))
    h.update(`L${l}:${JSON.stringify(sorted)}`)
    for (const e of Object.keys(novices ?? {}).map(Number).sort((a, b) => a - b)) h.update(`n${e}:`).update(bytes(novices![e]))
  }
  for (const name of Object.keys(edits.overrides).sort()) h.update(`o:${name}:${tensorDigest(edits.overrides[name])};`)
  return h.digest('hex').slice(0, 24)
}

/** The content hash of no edits at all: the unpruned model (sha256 of nothing, cut to 24). */
export const BASELINE_CONTENT_HASH = editsContentHash({ layers: {}, overrides: {} }, () => '')

/** Whether a variant's content hash is the unpruned model's (no edits). */
export function isBaselineContent(contentHash: string | null | undefined): boolean {
  return contentHash === BASELINE_CONTENT_HASH
}

/** A prepared variant's folder name under .harness/variants: model fingerprint (16) + content hash. */
export function variantFolderName(modelId: string, contentHash: string): string {
  return `${modelId.slice(0, 16)}-${contentHash}`
}

/** The content hash a variant folder's name carries (variantFolderName), or undefined for another name. */
export function contentHashOfFolderName(name: string): string | undefined {
  const m = /^[0-9a-f]{16}-([0-9a-f]{24})$/.exec(name)
  return m ? m[1] : undefined
}

/**
 * The one-pass calibration cache key (32 hex characters): model fingerprint, calibration data
 * fingerprint, sequences, length, seed.
 */
export function calibrationKeyOf(c: { modelId: string; dataFingerprint: unknown; sequences: number; length: number; seed: number }): string {
  return digest(JSON.stringify({ v: STATS_VERSION, model: c.modelId, data: c.dataFingerprint, sequences: c.sequences, length: c.length, seed: c.seed }), 32)
}

/** Bump when built scoring graphs change for the same inputs (graph builder semantics): part of every graph cache key. */
export const GRAPH_FORMAT_VERSION = 1

/**
 * The on-disk graph cache key (src/onnx/graphStore.ts), 32 hex characters: the graph format version,
 * the builder's source text (`code`, default sourceFingerprint.ts graphBuilderCode(): a graph stored by
 * other builder code is never reused), the checkpoint's identity as the graph sees it (its folder, every
 * weight file's path, size, mtime and inode, its config and the harness variant hooks it carries), the
 * edits' content hash, the graph options and whether non-finite weights were allowed. File identity
 * rather than the fingerprint: the graph points into those files, and hashing a many-GB checkpoint per
 * worker would cost more than the build.
 */
export function graphKey(k: { checkpoint: unknown; editsHash: string; options: unknown; allowNonfinite: boolean; code?: string }): string {
  return digest(`graph v${GRAPH_FORMAT_VERSION}\n${canonicalJson({ ...k, code: k.code ?? graphBuilderCode() })}`, 32)
}

