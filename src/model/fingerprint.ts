// The model fingerprint: one sha256 over everything that can change a score of a checkpoint folder.
// Results, calibration statistics and variant folders are keyed by it (runSweep, calibration/cache,
// variants/prepare), so anything left out here would let a sweep reuse stale numbers.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { isHarnessError } from '../errors.ts'
import { FINGERPRINT_VERSION } from '../identity/keys.ts'
import { readTensorBytes, type StoredTensor } from './safetensors.ts'
import { tokenizerIdentity } from './tokenizer.ts'
import { canonicalJson } from '../util/canonicalJson.ts'

// FINGERPRINT_VERSION lives with every other key's version in src/identity/keys.ts.
export { FINGERPRINT_VERSION }

// Files whose bytes stand in for the tokenizer settings when they cannot be resolved.
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']

/**
 * The tokenizer's part: the RESOLVED settings (tokenizer.json's hash, the special tokens' contents
 * and ids, the tokens transformers would add, lm-eval's prefix token, the options the JS
 * tokenizer reads), so editing tokenizer_config.json's bos_token changes the fingerprint while
 * re-indenting it does not. A folder without tokenizer.json contributes a marker; one whose files do
 * not resolve (eval would fail on them) contributes their bytes, so the fingerprint never throws
 * because of the tokenizer.
 */
function tokenizerPart(dir: string, config: Record<string, unknown>): string {
  if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) return 'tokenizer:none'
  try {
    return `tokenizer:${canonicalJson(tokenizerIdentity(dir, config))}`
  } catch (e) {
    if (!isHarnessError(e)) throw e
    const h = crypto.createHash('sha256')
    for (const f of TOKENIZER_FILES) {
      const file = path.join(dir, f)
      h.update(`${f}:`)
      if (fs.existsSync(file)) h.update(fs.readFileSync(file))
    }
    return `tokenizer-files:${h.digest('hex')}`
  }
}

/**
 * sha256 (hex) over: the fingerprint version; config.json's bytes; the resolved tokenizer settings
 * (tokenizerPart); the harness variant files when present; and every STORED tensor's name, dtype,
 * shape and bytes in name order (the files' bytes, so an FP8 weight is hashed as stored, and tensors
 * the model does not use are covered too). generation_config.json is not covered: nothing the harness scores reads it.
 */
export function checkpointFingerprint(dir: string, config: Record<string, unknown>, tensors: ReadonlyMap<string, StoredTensor>, extraFiles: readonly string[]): string {
  const h = crypto.createHash('sha256')
  h.update(`moe-harness fingerprint v${FINGERPRINT_VERSION}\n`)
  h.update(fs.readFileSync(path.join(dir, 'config.json')))
  h.update(`\n${tokenizerPart(dir, config)}\n`)
  for (const extra of extraFiles) {
    const f = path.join(dir, extra)
    if (fs.existsSync(f)) h.update(`${extra}:`).update(fs.readFileSync(f))
  }
  for (const name of [...tensors.keys()].sort()) {
    const e = tensors.get(name)!
    h.update(`${name}|${e.dtype}|${e.shape.join('x')}|`)
    h.update(readTensorBytes(e))
  }
  return h.digest('hex')
}
