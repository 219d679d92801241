import { defineTask, PY_SPACE } from '../src/index.ts'

// Python's \s (re on str): Unicode whitespace as str.isspace(), not JS \s.
const S = PY_SPACE
const bracketed = (open: string, close: string, inner: string) => new RegExp(`${open}${S}*(${inner}*?)${S}*${close}`, 'gu')

/** lm-eval preprocess_wikitext.wikitext_detokenizer, rule for rule, with Python's \s. */
export function wikitextDetokenize(page: string): string {
  let s = page
  s = s.replaceAll("s '", "s'")
  s = s.replace(/\/' [0-9]\//g, "/'[0-9]/")
  s = s.replaceAll(' @-@ ', '-').replaceAll(' @,@ ', ',').replaceAll(' @.@ ', '.')
  s = s.replaceAll(' : ', ': ').replaceAll(' ; ', '; ').replaceAll(' . ', '. ').replaceAll(' ! ', '! ').replaceAll(' ? ', '? ').replaceAll(' , ', ', ')
  s = s.replace(bracketed('\\(', '\\)', '[^)]'), '($1)')
  s = s.replace(bracketed('\\[', '\\]', '[^\\]]'), '[$1]')
  s = s.replace(bracketed('\\{', '\\}', '[^}]'), '{$1}')
  s = s.replace(bracketed('"', '"', '[^"]'), '"$1"')
  s = s.replace(bracketed("'", "'", "[^']"), "'$1'")
  s = s.replaceAll('= = = =', '====').replaceAll('= = =', '===').replaceAll('= =', '==')
  s = s.replaceAll(' \u00b0 ', '\u00b0')
  s = s.replaceAll(' \n', '\n').replaceAll('\n ', '\n')
  s = s.replaceAll(' N ', ' 1 ')
  s = s.replaceAll(" 's", "'s")
  return s
}

export default defineTask<{ page: string }>({
  name: 'wikitext',
  version: 2,
  description: 'WikiText-2 (raw, document level, test split): lm-eval word/byte perplexity over detokenized pages (words counted on the original page), plus the pruning papers\' token perplexity over disjoint windows.',
  kind: 'rolling',
  data: {
    files: ['wikitext/test.jsonl', 'wikitext/test.parquet', 'wikitext/wikitext-2-raw-v1/test-00000-of-00001.parquet'],
    howToGet: 'Download the test split of EleutherAI/wikitext_document_level (config wikitext-2-raw-v1) and save it as wikitext/test.jsonl or .parquet in the data folder.',
  },
  prompt: doc => ({ text: wikitextDetokenize(doc.page), countText: doc.page }),
  metrics: ['word_perplexity', 'byte_perplexity', 'bits_per_byte', 'token_perplexity'],
  primaryMetric: 'word_perplexity',
  tokenWindow: 2048,
  source: { upstream: 'wikitext', dataset: 'EleutherAI/wikitext_document_level wikitext-2-raw-v1', url: 'https://huggingface.co/datasets/EleutherAI/wikitext_document_level' },
})
