import { defineTask } from '../src/index.ts'

export default defineTask<{ id: string; text: string }>({
  name: 'nlp-corpus-perplexity',
  version: 1,
  description: 'Built-in. Rolling log-likelihood of held-out nlp-corpus passages (about 100 words of assorted English): word and byte perplexity, and token perplexity.',
  kind: 'rolling',
  data: { files: ['nlp-corpus-perplexity.jsonl'], builtIn: true, howToGet: 'Regenerate it with node --import tsx tools/tasks/build-builtin-tasks.ts.' },
  prompt: doc => ({ text: doc.text }),
  metrics: ['word_perplexity', 'byte_perplexity', 'bits_per_byte', 'token_perplexity'],
  primaryMetric: 'word_perplexity',
  source: { dataset: 'nlp-corpus (npm), held-out files' },
})
