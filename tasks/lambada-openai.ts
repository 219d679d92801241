import { defineTask } from '../src/index.ts'

export default defineTask<{ text: string }>({
  name: 'lambada-openai',
  version: 1,
  description: 'LAMBADA (OpenAI preprocessing, test split, 5153 passages): log-likelihood of the last word; acc is whether it is the greedy continuation, perplexity the mean over documents.',
  kind: 'loglikelihood',
  data: {
    files: ['lambada_openai/test.jsonl', 'lambada_openai/test.parquet', 'lambada_openai/test-00000-of-00001.parquet'],
    howToGet: 'Download the test split of EleutherAI/lambada_openai (config default) and save it as lambada_openai/test.jsonl or .parquet in the data folder.',
  },
  prompt: doc => {
    const words = doc.text.split(' ')
    return { context: words.slice(0, -1).join(' '), continuation: ` ${words[words.length - 1]}` }
  },
  metrics: ['perplexity', 'acc'],
  primaryMetric: 'acc',
  source: { upstream: 'lambada_openai', dataset: 'EleutherAI/lambada_openai', url: 'https://huggingface.co/datasets/EleutherAI/lambada_openai' },
})
