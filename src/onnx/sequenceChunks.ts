// How a scoring graph keeps its two largest tensors bounded at long sequences (issue 10, real
// contexts). lm-eval scores a rolling-perplexity document in windows of the model's whole context
// (HFLM.max_length: max_position_embeddings, 4096 to 163840 tokens for the papers' models), where
// attention scores [B, H, T, T] and the head's logits [M, V] outgrow any machine: one 20,000-token
// window of DeepSeek-V2-Lite needs 25.6 GB of scores per copy and 8.2 GB of logits. Both are exact
// row by row (a query's softmax sees only its own row; log-softmax and argmax are per scored
// position), so the graph computes them over blocks of rows and the numbers do not change: blocks of
// two rows or more are bit-identical to one pass (tests/engine/long-sequence-blocks.test.ts); a block
// of one query row is not (onnxruntime's MatMul takes another path for a single row, 1e-6 apart), so
// a block never has fewer than two rows unless the whole has one.
// The graph (moeGraph.ts) and the memory estimate (src/pool/memoryFit.ts) both read the rule here.

/** Element counts (float32 elements of one tensor) that decide how rows are blocked. */
export interface ChunkLimits {
  /**
   * Attention runs in one pass while its B·H·T² scores fit here (every default 2048-token batch of a
   * model with up to 16 heads), else in passes of as many query rows as keep B·H·rows·T within it.
   */
  attention: number
  /** The head's pass takes as many scored positions as keep rows·V within this. */
  head: number
}

/** 256 MiB of float32 per attention pass and per block of logits. */
export const CHUNK_LIMITS: ChunkLimits = { attention: 2 ** 26, head: 2 ** 26 }

/**
 * The most query rows one attention pass may hold for B rows of T positions and H query heads: T (one
 * pass) while B·H·T² <= limits.attention, else max(2, floor(limits.attention / (B·H·T))), never more
 * than T: an upper bound of attentionRows.
 */
export function attentionBlock(B: number, H: number, T: number, limits: ChunkLimits = CHUNK_LIMITS): number {
  if (B * H * T * T <= limits.attention) return T
  return Math.min(T, Math.max(2, Math.floor(limits.attention / (B * H * T))))
}

/**
 * The most attention scores (elements of [B, H, Q, T]) one pass holds, for memoryFit: B·H·T² in one
 * pass, else the limit (B·H·attentionBlock·T is within it) or two rows, B·H·2·T, when two rows exceed
 * it. Never falls as T grows, unlike B·H·attentionBlock·T (whole rows: a sawtooth below the limit), so
 * the longest sequence that fits can be found by bisection.
 */
export function attentionScores(B: number, H: number, T: number, limits: ChunkLimits = CHUNK_LIMITS): number {
  const whole = B * H * T * T
  return whole <= limits.attention ? whole : Math.max(limits.attention, 2 * B * H * T)
}

/**
 * Query rows per attention pass, as the graph computes them: the passes blocks of attentionBlock rows
 * need, ceil(T / block), each of ceil(T / passes) rows. The last block is padded to a whole one and
 * every padded row is computed, so equal blocks keep the padding under one row per pass (blocks of the
 * largest size padded T = 4100 to 2 x 4092 rows: twice the work). Never fewer than two rows unless T is 1.
 */
export function attentionRows(B: number, H: number, T: number, limits: ChunkLimits = CHUNK_LIMITS): number {
  return evenRows(T, attentionBlock(B, H, T, limits))
}

/** Scored positions per head pass for M >= 1 positions and a vocabulary of V: min(M, headBlock(V)) in equal blocks (as attentionRows). */
export function headRows(M: number, V: number, limits: ChunkLimits = CHUNK_LIMITS): number {
  return evenRows(M, Math.min(M, headBlock(V, limits)))
}

/** The head's block before it is capped by the positions scored: max(2, floor(limits.head / V)). */
export function headBlock(V: number, limits: ChunkLimits = CHUNK_LIMITS): number {
  return Math.max(2, Math.floor(limits.head / V))
}

/** Rows per pass when `n` rows go in the fewest passes of at most `block` rows, all passes equal: ceil(n / ceil(n / block)). */
function evenRows(n: number, block: number): number {
  return Math.max(1, Math.ceil(n / Math.max(1, Math.ceil(n / block))))
}
