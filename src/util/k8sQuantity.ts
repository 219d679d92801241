// Kubernetes memory quantities ('18Gi', '500Mi', '20G'), read as the API server reads them, so a size
// the config or the CLI accepts is one a manifest can hold. Here, low, so the config can validate it.

const SUFFIX: Record<string, number> = {
  '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
}

/**
 * Bytes of a Kubernetes memory quantity: a decimal number with an optional suffix, binary (Ki, Mi, Gi,
 * Ti, Pi, Ei: powers of 1024) or decimal (k, M, G, T, P, E: powers of 1000; none: bytes), or with an
 * exponent ('129e6'). Undefined for anything else, for 'm' (milli: '500m' is half a byte, a common slip
 * for Mi) and for less than one byte. Case matters, as in Kubernetes: '18g' and '18GB' are not quantities.
 */
export function parseK8sMemory(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?|\.\d+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?|[eE]([+-]?\d+))$/.exec(text.trim())
  if (!m) return undefined
  const bytes = Number(m[1]) * (m[3] !== undefined ? 10 ** Number(m[3]) : SUFFIX[m[2] ?? '']!)
  return Number.isFinite(bytes) && bytes >= 1 ? bytes : undefined
}

/** Why `text` is not a memory quantity (parseK8sMemory refused it), with what to write instead; for error messages. */
export function k8sMemoryProblem(text: string): string {
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]+)$/.exec(text.trim())
  const n = m?.[1] ?? '18'
  const letter = m && /^[kmgtpe]/i.test(m[2]!) ? m[2]![0]!.toUpperCase() : 'G'
  const why = m?.[2] === 'm' ? ` ('m' is milli in Kubernetes: ${n}m is a fraction of a byte)`
    : /\d\s+\S/.test(text.trim()) ? ' (no space between the number and its unit)'
    : m && /^[kmgtpe]i?b?$/i.test(m[2]!) ? ' (its units are case-sensitive, without a B)'
    : /^[\d.]+$/.test(text.trim()) ? ' (less than one byte)'
    : ''
  return `'${text}' is not a Kubernetes memory quantity${why}: write for example ${n}${letter}i (powers of 1024) or ${n}${letter === 'K' ? 'k' : letter} (powers of 1000)`
}
