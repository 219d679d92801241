// Shared inputs of the malformed-input corpus: one valid tiny checkpoint and database builders, plus
// byte-level helpers that break safetensors files the way real downloads and disks do.
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { ResultsStore } from '../../src/store/resultsStore.ts'
import { writeTinyCheckpoint } from '../helpers/tinyCheckpoint.ts'
import type { Fixtures } from './cases/types.ts'

export function createFixtures(root: string): Fixtures {
  const baseModel = path.join(root, 'base-model')
  writeTinyCheckpoint(baseModel, { family: 'mixtral', seed: 7, layers: 2, experts: 4, hidden: 32, ffn: 24 })
  return {
    baseModel,
    model(dir, name = 'model') {
      const to = path.join(dir, name)
      fs.cpSync(baseModel, to, { recursive: true })
      return to
    },
    harnessDb(file) {
      const store = new ResultsStore(file)
      try {
        store.upsertModel({ model_id: 'm1', name: 'tiny', path: '/models/tiny', architecture: 'MixtralForCausalLM', config_json: '{}', total_params: 1000 })
        store.saveRun(
          { model_id: 'm1', content_hash: 'h', task: 'brown-cloze', task_version: 1, subset: 'all', scoring_key: 'k', harness_version: '0', ort_version: '0', device: 'cpu', status: 'complete', error: null, docs: 300, seconds: 1, tokens_processed: 10, tokens_per_choice: 1 },
          [{ metric: 'acc', value: 0.5, stderr: 0.01, higher_is_better: 1 }],
          Array.from({ length: 300 }, (_, doc) => ({ doc, gold_json: '0', lls_json: JSON.stringify([-1.25, -2.5, -3.75, -4.5]), lls_unconditional_json: null, greedy_json: '[false,false,false,false]', preds_json: '{"acc":0}', counts_json: null })),
        )
      } finally {
        store.close()
      }
      return file
    },
    foreignDb(file) {
      const db = new Database(file)
      db.exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('buy milk'), ('call Sam');`)
      db.close()
      return file
    },
    config(dir, config, name = 'harness.config.ts') {
      const file = path.join(dir, name)
      fs.writeFileSync(file, `export default ${JSON.stringify(config, null, 2)}\n`)
      return file
    },
  }
}

/** A safetensors file as its JSON header text and data bytes. */
export function readSafetensorsRaw(file: string): { header: Record<string, any>; data: Buffer } {
  const bytes = fs.readFileSync(file)
  const len = Number(bytes.readBigUInt64LE(0))
  return { header: JSON.parse(bytes.subarray(8, 8 + len).toString('utf8')), data: bytes.subarray(8 + len) }
}

/** Writes a safetensors file from a header (object or raw JSON text) and data bytes, no checks. */
export function writeSafetensorsRaw(file: string, header: Record<string, unknown> | string, data: Uint8Array): void {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8')
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(text.length))
  fs.writeFileSync(file, Buffer.concat([len, text, data]))
}

/** Edits the header and data of `dir/model.safetensors` in place. */
export function editSafetensors(dir: string, edit: (header: Record<string, any>, data: Buffer) => { header: Record<string, unknown> | string; data: Uint8Array } | void, file = 'model.safetensors'): void {
  const p = path.join(dir, file)
  const { header, data } = readSafetensorsRaw(p)
  const out = edit(header, data) ?? { header, data }
  writeSafetensorsRaw(p, out.header, out.data)
}

/** Tensor names of a header in data order (the __metadata__ entry left out). */
export function tensorNames(header: Record<string, any>): string[] {
  return Object.keys(header).filter(k => k !== '__metadata__').sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0])
}

/** Deterministic pseudo-random bytes (a xorshift stream), for files of garbage. */
export function garbage(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    out[i] = x & 255
  }
  return out
}

export function readJson(file: string): any {
  return JSON.parse(fs.readFileSync(file, 'utf8'))
}

export function writeJson(file: string, value: unknown): void {
  fs.writeFileSync(file, JSON.stringify(value, null, 2))
}
