import { defineTask } from '../src/index.ts'

interface RteDoc { sentence1: string; sentence2: string; label: number }

export default defineTask<RteDoc>({
  name: 'rte',
  version: 1,
  description: 'RTE (GLUE, validation split, 277 pairs); lm-eval rte prompt (0 = entailment = "True").',
  kind: 'multiple_choice',
  data: {
    files: ['rte/validation.jsonl', 'rte/validation.parquet', 'rte/validation-00000-of-00001.parquet'],
    howToGet: 'Download the validation split of nyu-mll/glue (config rte) and save it as rte/validation.jsonl or .parquet in the data folder.',
  },
  prompt: doc => ({ context: `${doc.sentence1}\nQuestion: ${doc.sentence2} True or False?\nAnswer:`, choices: ['True', 'False'], gold: doc.label }),
  metrics: ['acc'],
  primaryMetric: 'acc',
  source: { upstream: 'rte', dataset: 'nyu-mll/glue rte', url: 'https://huggingface.co/datasets/nyu-mll/glue' },
})
