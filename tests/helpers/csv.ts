// RFC 4180 CSV (quoted fields, doubled quotes) read back for assertions on the harness's CSV files.

/** The rows of `text` as objects by header. */
export function parseCsv(text: string): Record<string, string>[] {
  const records: string[][] = []
  let field = '', record: string[] = [], quoted = false
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++ } else if (ch === '"') quoted = false
      else field += ch
    } else if (ch === '"') quoted = true
    else if (ch === ',') { record.push(field); field = '' }
    else if (ch === '\n') { record.push(field); records.push(record); record = []; field = '' }
    else field += ch
  }
  const [header, ...rows] = records
  return rows.map(r => Object.fromEntries(header!.map((h, i) => [h, r[i]!])))
}
