import { defineTask, pyCapitalize, pyStrip } from '../src/index.ts'

interface RawHellaswag { activity_label: string; ctx_a: string; ctx_b: string; endings: string[]; label: string | number }
interface HellaswagDoc { query: string; choices: string[]; gold: number }

/**
 * lm-eval hellaswag/utils.py preprocess: WikiHow bracket artefacts out, double spaces collapsed once.
 * Python semantics: str.strip()'s whitespace, and re's "." matches everything but "\n" (JS "." also
 * stops at "\r", U+2028 and U+2029).
 */
export function preprocess(text: string): string {
  return pyStrip(text).replaceAll(' [title]', '. ').replace(/\[[^\n]*?\]/gu, '').replaceAll('  ', ' ')
}

export default defineTask<HellaswagDoc>({
  name: 'hellaswag',
  version: 2,
  description: 'HellaSwag (validation split, 10042 items); lm-eval hellaswag preprocessing and prompt.',
  kind: 'multiple_choice',
  data: {
    files: ['hellaswag/validation.jsonl', 'hellaswag/validation.parquet', 'hellaswag/validation-00000-of-00001.parquet'],
    howToGet: 'Download the validation split of Rowan/hellaswag and save it as hellaswag/validation.jsonl or .parquet in the data folder.',
  },
  process: record => {
    const r = record as unknown as RawHellaswag
    const ctx = `${r.ctx_a} ${pyCapitalize(r.ctx_b)}`
    return { query: preprocess(`${r.activity_label}: ${ctx}`), choices: r.endings.map(preprocess), gold: Number(r.label) }
  },
  prompt: doc => ({ context: doc.query, choices: doc.choices, gold: doc.gold }),
  metrics: ['acc', 'acc_norm'],
  primaryMetric: 'acc_norm',
  source: { upstream: 'hellaswag', dataset: 'Rowan/hellaswag', url: 'https://huggingface.co/datasets/Rowan/hellaswag' },
})
