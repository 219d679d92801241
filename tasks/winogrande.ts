import { defineTask, InvalidRecordError, labelIndex, pyStrip } from '../src/index.ts'

interface WinograndeDoc { sentence: string; option1: string; option2: string; answer: string }

export default defineTask<WinograndeDoc>({
  name: 'winogrande',
  version: 2,
  description: 'WinoGrande XL (validation split, 1267 items) with lm-eval\'s partial scoring: each option fills the blank as a context and only the shared rest of the sentence is scored.',
  kind: 'multiple_input',
  data: {
    files: ['winogrande/validation.jsonl', 'winogrande/validation.parquet', 'winogrande/validation-00000-of-00001.parquet'],
    howToGet: 'Download the validation split of allenai/winogrande (config winogrande_xl) and save it as winogrande/validation.jsonl or .parquet in the data folder.',
  },
  prompt: doc => {
    const blank = doc.sentence.indexOf('_')
    if (blank < 0) throw new InvalidRecordError(`sentence has no '_' blank for the options to fill: ${JSON.stringify(doc.sentence).slice(0, 60)}`)
    return {
      contexts: [doc.option1, doc.option2].map(option => doc.sentence.slice(0, blank) + option),
      continuation: pyStrip(doc.sentence.slice(blank + 1)),
      gold: labelIndex(['1', '2'], doc.answer, 'answer'),
    }
  },
  metrics: ['acc'],
  primaryMetric: 'acc',
  source: { upstream: 'winogrande', dataset: 'allenai/winogrande winogrande_xl', url: 'https://huggingface.co/datasets/allenai/winogrande' },
})
