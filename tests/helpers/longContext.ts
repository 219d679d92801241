// A checkpoint whose context is longer than this machine's memory can score in one sequence, and the
// long document that fills it: the setting of the SEQUENCE_TOO_LONG tests (eval and score).
import fs from 'node:fs'
import path from 'node:path'
import { writeTinyCheckpoint, type TinyModel } from './tinyCheckpoint.ts'

/** Width 1024 and a 1,000,000-token context: a ~400,000-token window needs tens of GB of activations, even in blocks. */
export function writeLongContextModel(dir: string): TinyModel {
  const model = writeTinyCheckpoint(path.join(dir, 'model'), { family: 'qwen3_moe', hidden: 1024, heads: 8, kvHeads: 2, experts: 4, topK: 2, seed: 3 })
  const configFile = path.join(model.dir, 'config.json')
  fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(configFile, 'utf8')), max_position_embeddings: 1_000_000 }))
  return model
}

/** 400,000 characters of text (~400,000 tokens of the tiny tokenizer). */
export const LONG_TEXT = 'word '.repeat(80_000)

/** A data folder whose wikitext test split is one page of LONG_TEXT: every window is scored at the model's context, so it is one ~400,000-token window. */
export function writeLongWikitext(dir: string): string {
  const dataDir = path.join(dir, 'data')
  fs.mkdirSync(path.join(dataDir, 'wikitext'), { recursive: true })
  fs.writeFileSync(path.join(dataDir, 'wikitext', 'test.jsonl'), JSON.stringify({ page: ' = Long = \n' + LONG_TEXT }) + '\n')
  return dataDir
}
