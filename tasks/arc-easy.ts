import { defineTask } from '../src/index.ts'
import { arcPrompt, type ArcDoc } from './shared/arc.ts'

export default defineTask<ArcDoc>({
  name: 'arc-easy',
  version: 1,
  description: 'AI2 ARC, Easy set (test split, 2376 questions); lm-eval arc_easy prompt and metrics.',
  kind: 'multiple_choice',
  data: {
    files: ['arc_easy/test.jsonl', 'arc_easy/test.parquet', 'arc_easy/test-00000-of-00001.parquet'],
    howToGet: 'Download the test split of allenai/ai2_arc (config ARC-Easy) and save it as arc_easy/test.jsonl or .parquet in the data folder.',
  },
  prompt: arcPrompt,
  metrics: ['acc', 'acc_norm'],
  primaryMetric: 'acc_norm',
  source: { upstream: 'arc_easy', dataset: 'allenai/ai2_arc ARC-Easy', url: 'https://huggingface.co/datasets/allenai/ai2_arc' },
})
