// Generates the built-in tasks' data (tasks/data/*.jsonl) from the held-out test documents of the
// npm corpora (build/corpus/test.jsonl, written by tools/corpus/prepare.ts), and the calibration
// text from the validation documents. Deterministic: a fixed seed and sorted inputs.
// Usage: node --import tsx tools/tasks/build-builtin-tasks.ts
import fs from 'node:fs'
import path from 'node:path'
import { mulberry32 } from '../../src/util/rng.ts'
import { detokenizeBrown } from '../corpus/brown.ts'
import type { CorpusDocument } from '../corpus/prepare.ts'

const OUT = path.resolve('tasks/data')
const rng = mulberry32(20261127)
const pick = <T>(xs: readonly T[]) => xs[Math.floor(rng() * xs.length)]
function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1))
    ;[xs[i], xs[j]] = [xs[j], xs[i]]
  }
  return xs
}

function readSplit(name: string): CorpusDocument[] {
  const file = path.resolve(`build/corpus/${name}.jsonl`)
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run node --import tsx tools/corpus/prepare.ts first`)
  return fs.readFileSync(file, 'utf8').trim().split('\n').map(l => JSON.parse(l))
}

/** A seeded subsample that keeps corpus order (so every category stays represented). */
function cap<T>(rows: T[], n: number): T[] {
  if (rows.length <= n) return rows
  const keep = new Set(shuffle(rows.map((_, i) => i)).slice(0, n))
  return rows.filter((_, i) => keep.has(i))
}

function writeJsonl(name: string, rows: object[]) {
  fs.writeFileSync(path.join(OUT, name), rows.map(r => JSON.stringify(r)).join('\n') + '\n')
  console.log(`${name}: ${rows.length} items`)
}

const test = readSplit('test')
const brown = test.filter(d => d.source === 'brown')
const nlp = test.filter(d => d.source === 'nlp-corpus')
const baseTag = (t: string) => t.replace(/-(tl|hl|nc)$/g, '').replace(/^fw-/, '')
const isWord = (w: string) => /^[A-Za-z][a-z]+$/.test(w)

// ---- cloze: the last word of a sentence vs three words with the same POS tag
{
  const CONTENT = new Set(['nn', 'nns', 'jj', 'vb', 'vbd', 'vbn', 'vbg', 'vbz', 'rb'])
  const byTag = new Map<string, Map<string, number>>()
  for (const d of brown) for (const s of d.sentences) for (const [w, t] of s.tagged!) {
    const tag = baseTag(t)
    if (!CONTENT.has(tag) || !isWord(w)) continue
    const m = byTag.get(tag) ?? new Map<string, number>()
    m.set(w.toLowerCase(), (m.get(w.toLowerCase()) ?? 0) + 1)
    byTag.set(tag, m)
  }
  const pools = new Map([...byTag].map(([tag, m]) => [tag, [...m].filter(([, c]) => c >= 3).map(([w]) => w).sort()]))
  const rows: object[] = []
  for (const d of brown) d.sentences.forEach((s, si) => {
    const tagged = s.tagged!
    const end = tagged.length - 1
    if (end < 8 || !['.', '!', '?'].includes(tagged[end][0])) return
    const [word, tag0] = tagged[end - 1]
    const tag = baseTag(tag0)
    const pool = pools.get(tag)
    if (!CONTENT.has(tag) || !isWord(word) || word !== word.toLowerCase() || !pool || pool.length < 20) return
    const context = detokenizeBrown(tagged.slice(0, end - 1).map(x => x[0]))
    const used = new Set(context.toLowerCase().split(/\W+/))
    const distractors = new Set<string>()
    while (distractors.size < 3) {
      const w = pick(pool)
      if (w !== word && !used.has(w)) distractors.add(w)
    }
    const choices = shuffle([word, ...distractors])
    rows.push({ id: `${d.id}.${si}`, context, choices, gold: choices.indexOf(word), tag })
  })
  writeJsonl('brown-cloze.jsonl', cap(rows, 1500))
}

// ---- agreement minimal pairs: is/are, was/were, has/have swapped
{
  const SWAP: Record<string, string> = { is: 'are', are: 'is', was: 'were', were: 'was', has: 'have', have: 'has' }
  const TAGS: Record<string, string> = { is: 'bez', are: 'ber', was: 'bedz', were: 'bed', has: 'hvz', have: 'hv' }
  const NOT_AGREEMENT = new Set(['to', 'will', 'would', 'shall', 'should', 'can', 'could', 'may', 'might', 'must', "n't", 'not', 'never'])
  const rows: object[] = []
  for (const d of brown) d.sentences.forEach((s, si) => {
    const words = s.tagged!.map(x => x[0])
    const at = s.tagged!.findIndex(([w, t], i) => i >= 2 && TAGS[w] === t)
    if (at < 0 || words.length < 5) return
    const verb = words[at]
    const before = words.slice(Math.max(0, at - 4), at).map(w => w.toLowerCase())
    if (verb === 'have' && NOT_AGREEMENT.has(words[at - 1].toLowerCase())) return
    if (verb === 'were' && (before.includes('if') || before.includes('wish') || before.includes('though'))) return
    // Questions and inverted clauses put the verb before its subject; keep declaratives only.
    if (words[words.length - 1] === '?') return
    const context = detokenizeBrown(words.slice(0, at))
    const rest = words.slice(at + 1)
    const good = detokenizeBrown([verb, ...rest])
    const bad = detokenizeBrown([SWAP[verb], ...rest])
    const goodFirst = rng() < 0.5
    rows.push({ id: `${d.id}.${si}`, context, choices: goodFirst ? [good, bad] : [bad, good], gold: goodFirst ? 0 : 1, verb })
  })
  writeJsonl('brown-agreement.jsonl', rows)
}

// ---- next sentence: the true next sentence vs three sentences of other held-out documents
{
  const all = brown.flatMap(d => d.sentences.map(s => ({ doc: d.id, text: s.text })))
    .filter(s => s.text.split(' ').length >= 5 && s.text.split(' ').length <= 40)
  const rows: object[] = []
  for (const d of brown) {
    for (let i = 1; i < d.sentences.length; i++) {
      const next = d.sentences[i].text
      const n = next.split(' ').length
      if (n < 5 || n > 40 || rng() > 0.45) continue
      const context = d.sentences.slice(Math.max(0, i - 2), i).map(s => s.text).join(' ')
      const similar = all.filter(s => s.doc !== d.id && Math.abs(s.text.length - next.length) <= 0.3 * next.length)
      const distractors = new Set<string>()
      while (distractors.size < 3) distractors.add(pick(similar).text)
      distractors.delete(next)
      if (distractors.size < 3) continue
      const choices = shuffle([next, ...distractors])
      rows.push({ id: `${d.id}.${i}`, context, choices, gold: choices.indexOf(next) })
    }
  }
  writeJsonl('brown-next-sentence.jsonl', cap(rows, 1200))
}

// ---- perplexity: passages of consecutive held-out sentences (about 80-100 words each)
function passages(docs: CorpusDocument[], words: number): object[] {
  const rows: object[] = []
  for (const d of docs) {
    let current: string[] = []
    let count = 0
    let part = 0
    for (const s of d.sentences) {
      current.push(s.text)
      count += s.text.split(' ').length
      if (count >= words) {
        rows.push({ id: `${d.id}.p${part++}`, text: current.join(' ') })
        current = []
        count = 0
      }
    }
    if (count >= words / 2) rows.push({ id: `${d.id}.p${part}`, text: current.join(' ') })
  }
  return rows
}
writeJsonl('brown-perplexity.jsonl', passages(brown, 80))
writeJsonl('nlp-corpus-perplexity.jsonl', cap(passages(nlp, 100), 1200))

// ---- calibration text: the validation documents (held out from training, never evaluated)
{
  const validation = readSplit('validation')
  writeJsonl('calibration-validation.jsonl', cap(validation, 120).map(d => ({ id: `${d.source}/${d.id}`, text: d.sentences.map(s => s.text).join(' ') })))
}
