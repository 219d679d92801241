import { defineTask } from '../src/index.ts'

interface PiqaDoc { goal: string; sol1: string; sol2: string; label: number }

export default defineTask<PiqaDoc>({
  name: 'piqa',
  version: 1,
  description: 'PIQA (validation split, 1838 items); lm-eval piqa prompt.',
  kind: 'multiple_choice',
  data: {
    files: ['piqa/validation.jsonl', 'piqa/validation.parquet', 'piqa/validation-00000-of-00001.parquet'],
    howToGet: 'Download the validation split of baber/piqa (the parquet re-host lm-eval uses) and save it as piqa/validation.jsonl or .parquet in the data folder.',
  },
  prompt: doc => ({ context: `Question: ${doc.goal}\nAnswer:`, choices: [doc.sol1, doc.sol2], gold: doc.label }),
  metrics: ['acc', 'acc_norm'],
  primaryMetric: 'acc_norm',
  source: { upstream: 'piqa', dataset: 'baber/piqa', url: 'https://huggingface.co/datasets/baber/piqa' },
})
