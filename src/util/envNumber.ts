// One reading of the numeric MOE_HARNESS_* variables, so they all accept the same forms.

/**
 * `text` as a number >= 0 written in decimal (`512`, `0.5`, `.5`, `1e3`, surrounding spaces allowed),
 * or Infinity when `allowInfinity` and the text is `Infinity`; undefined for anything else (hex, signs,
 * units, NaN, empty).
 */
export function parseNonNegative(text: string, allowInfinity = false): number | undefined {
  const t = text.trim()
  if (allowInfinity && t === 'Infinity') return Infinity
  return /^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(t) ? Number(t) : undefined
}
