// Encodes the corpus splits with the very tokenizer the harness uses (@huggingface/tokenizers),
// so training and evaluation see identical ids. Each document is preceded by <|endoftext|> (id 0).
// Output: build/corpus/<split>.bin, little-endian uint16 token ids.
// Usage: node --import tsx tools/corpus/encode.ts build/tokenizer
import fs from 'node:fs'
import path from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'

const tokDir = process.argv[2] ?? 'build/tokenizer'
const tokenizer = new Tokenizer(
  JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer.json'), 'utf8')),
  JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer_config.json'), 'utf8')),
)
for (const split of ['train', 'validation']) {
  const ids: number[] = []
  const lines = fs.readFileSync(`build/corpus/${split}.jsonl`, 'utf8').trim().split('\n')
  for (const line of lines) {
    const text = (JSON.parse(line).sentences as { text: string }[]).map(s => s.text).join(' ')
    ids.push(0, ...tokenizer.encode(text, { add_special_tokens: false }).ids)
  }
  fs.writeFileSync(`build/corpus/${split}.bin`, Buffer.from(Uint16Array.from(ids).buffer))
  console.log(`${split}: ${ids.length} tokens`)
}
