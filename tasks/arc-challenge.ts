import { defineTask } from '../src/index.ts'
import { arcPrompt, type ArcDoc } from './shared/arc.ts'

export default defineTask<ArcDoc>({
  name: 'arc-challenge',
  version: 1,
  description: 'AI2 ARC, Challenge set (test split, 1172 questions); lm-eval arc_challenge prompt and metrics.',
  kind: 'multiple_choice',
  data: {
    files: ['arc_challenge/test.jsonl', 'arc_challenge/test.parquet', 'arc_challenge/test-00000-of-00001.parquet'],
    howToGet: 'Download the test split of allenai/ai2_arc (config ARC-Challenge) and save it as arc_challenge/test.jsonl or .parquet in the data folder.',
  },
  prompt: arcPrompt,
  metrics: ['acc', 'acc_norm'],
  primaryMetric: 'acc_norm',
  source: { upstream: 'arc_challenge', dataset: 'allenai/ai2_arc ARC-Challenge', url: 'https://huggingface.co/datasets/allenai/ai2_arc' },
})
