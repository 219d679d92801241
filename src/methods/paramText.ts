// How a method parameter's allowed values read to a user: one text for `moe-harness methods` and the
// report's method pages, so the two never disagree.

/** What a parameter declares about its values (defineMethod.ts ParamSpec, or its stored JSON: reads.ts StoredParamSpec). */
export interface ParamValuesSpec { type: string; min?: number; max?: number; values?: readonly string[] }

/**
 * The allowed values of parameter `name`, braced: `{0 <= r < 1}` for the shared ratio (p.ratio's
 * 0..0.999999), `{integer, 0 <= x <= 10}` / `{x >= 2}` for numbers with bounds, `{a|b}` for enums,
 * `{true|false}` for booleans; '' for a plain number without bounds (or an unknown type).
 */
export function paramValuesText(name: string, spec: ParamValuesSpec): string {
  if (name === 'ratio' && spec.type === 'number' && spec.min === 0 && spec.max === 0.999999) return '{0 <= r < 1}'
  if (spec.type === 'enum') return `{${(spec.values ?? []).join('|')}}`
  if (spec.type === 'boolean') return '{true|false}'
  if (spec.type !== 'number' && spec.type !== 'integer') return ''
  const bounds = spec.min !== undefined && spec.max !== undefined ? `${spec.min} <= x <= ${spec.max}` : spec.min !== undefined ? `x >= ${spec.min}` : spec.max !== undefined ? `x <= ${spec.max}` : ''
  const parts = [spec.type === 'integer' ? 'integer' : '', bounds].filter(Boolean)
  return parts.length ? `{${parts.join(', ')}}` : ''
}
