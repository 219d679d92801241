// A byte-level BPE trainer (GPT-2 style) that writes a HuggingFace tokenizer.json.
// Every byte is in the base alphabet, so any text encodes without an unknown token.
// Deterministic: the most frequent pair wins, ties go to the smaller (left, right) symbol ids.
// Usage: node --import tsx tools/tokenizer/train-bpe.ts --vocab 8192 --out DIR build/corpus/train.jsonl
import fs from 'node:fs'
import path from 'node:path'

export const SPECIAL_TOKENS = ['<|endoftext|>'] as const
const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu

/** GPT-2's reversible byte → printable character map, as the ByteLevel pre-tokenizer uses it. */
export function byteToUnicode(): string[] {
  const printable: number[] = []
  for (let b = 33; b <= 126; b++) printable.push(b)
  for (let b = 161; b <= 172; b++) printable.push(b)
  for (let b = 174; b <= 255; b++) printable.push(b)
  const map: string[] = new Array(256)
  let extra = 0
  for (let b = 0; b < 256; b++) {
    map[b] = printable.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++)
  }
  return map
}

class MaxHeap {
  private items: [number, number, number][] = [] // [count, left, right]
  get size() { return this.items.length }
  private better(i: number, j: number) {
    const a = this.items[i], b = this.items[j]
    if (a[0] !== b[0]) return a[0] > b[0]
    if (a[1] !== b[1]) return a[1] < b[1]
    return a[2] < b[2]
  }
  push(item: [number, number, number]) {
    this.items.push(item)
    let i = this.items.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.better(i, p)) break
      ;[this.items[i], this.items[p]] = [this.items[p], this.items[i]]
      i = p
    }
  }
  pop(): [number, number, number] | undefined {
    const top = this.items[0]
    const last = this.items.pop()
    if (this.items.length > 0 && last) {
      this.items[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1, r = l + 1
        let m = i
        if (l < this.items.length && this.better(l, m)) m = l
        if (r < this.items.length && this.better(r, m)) m = r
        if (m === i) break
        ;[this.items[i], this.items[m]] = [this.items[m], this.items[i]]
        i = m
      }
    }
    return top
  }
}

export function trainByteLevelBpe(texts: Iterable<string>, vocabSize: number) {
  const b2u = byteToUnicode()
  const encoder = new TextEncoder()
  const wordCounts = new Map<string, number>()
  for (const text of texts) {
    for (const piece of text.match(GPT2_PATTERN) ?? []) wordCounts.set(piece, (wordCounts.get(piece) ?? 0) + 1)
  }
  const symbols: string[] = [...b2u]
  const words: number[][] = []
  const freqs: number[] = []
  for (const [piece, count] of [...wordCounts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    words.push(Array.from(encoder.encode(piece)))
    freqs.push(count)
  }
  const key = (a: number, b: number) => a * 65536 + b
  const pairCount = new Map<number, number>()
  const pairWords = new Map<number, Set<number>>()
  const addPairs = (w: number, sign: number) => {
    const s = words[w]
    for (let i = 0; i + 1 < s.length; i++) {
      const k = key(s[i], s[i + 1])
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * freqs[w])
      if (sign > 0) {
        let set = pairWords.get(k)
        if (!set) pairWords.set(k, (set = new Set()))
        set.add(w)
      }
    }
  }
  for (let w = 0; w < words.length; w++) addPairs(w, 1)
  const heap = new MaxHeap()
  for (const [k, c] of pairCount) heap.push([c, Math.floor(k / 65536), k % 65536])

  const merges: [string, string][] = []
  const target = vocabSize - SPECIAL_TOKENS.length
  while (symbols.length < target && heap.size > 0) {
    const [count, a, b] = heap.pop()!
    const k = key(a, b)
    const current = pairCount.get(k) ?? 0
    if (current !== count) {
      if (current > 0) heap.push([current, a, b])
      continue
    }
    if (count < 2) break
    const c = symbols.length
    symbols.push(symbols[a] + symbols[b])
    merges.push([symbols[a], symbols[b]])
    const touched = new Map<number, number>()
    for (const w of pairWords.get(k) ?? []) {
      addPairs(w, -1)
      const s = words[w]
      const merged: number[] = []
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          merged.push(c)
          i++
        } else merged.push(s[i])
      }
      words[w] = merged
      addPairs(w, 1)
      for (let i = 0; i + 1 < merged.length; i++) {
        if (merged[i] === c || merged[i + 1] === c) touched.set(key(merged[i], merged[i + 1]), 1)
      }
    }
    pairWords.delete(k)
    pairCount.delete(k)
    for (const t of touched.keys()) heap.push([pairCount.get(t)!, Math.floor(t / 65536), t % 65536])
  }
  return { symbols, merges }
}

export function tokenizerJson(symbols: readonly string[], merges: readonly [string, string][]) {
  const vocab: Record<string, number> = {}
  SPECIAL_TOKENS.forEach((t, i) => (vocab[t] = i))
  symbols.forEach((s, i) => (vocab[s] = i + SPECIAL_TOKENS.length))
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2)
  const vocabSize = Number(args[args.indexOf('--vocab') + 1] ?? 8192)
  const outDir = args[args.indexOf('--out') + 1]
  const input = args[args.length - 1]
  const texts = fs.readFileSync(input, 'utf8').trim().split('\n')
    .map(line => (JSON.parse(line).sentences as { text: string }[]).map(s => s.text).join(' '))
  const t0 = Date.now()
  const { symbols, merges } = trainByteLevelBpe(texts, vocabSize)
  fs.mkdirSync(outDir, { recursive: true })
  fs.writeFileSync(path.join(outDir, 'tokenizer.json'), JSON.stringify(tokenizerJson(symbols, merges)))
  fs.writeFileSync(path.join(outDir, 'tokenizer_config.json'), JSON.stringify({
    bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: null,
    add_bos_token: false, add_eos_token: false, clean_up_tokenization_spaces: false,
    model_max_length: 256, tokenizer_class: 'PreTrainedTokenizerFast',
  }, null, 2))
  console.log(`vocab ${symbols.length + SPECIAL_TOKENS.length}, ${merges.length} merges in ${Date.now() - t0} ms`)
}
