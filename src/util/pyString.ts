// Python's string semantics, for every place where lm-evaluation-harness measures or transforms a
// string (choice lengths for acc_norm, strip/split/re.split, capitalize, lower). JavaScript differs
// in three ways that change scores: String.length counts UTF-16 units (an astral character is 2,
// Python's len() says 1), JS whitespace (\s, trim) includes U+FEFF but not U+001C-U+001F or U+0085
// (Python's str.isspace() is the other way round), and there is no title-case mapping, which
// str.capitalize() uses for the first character.

/**
 * Python's whitespace: the characters for which str.isspace() is true (bidirectional class WS, B or
 * S, or category Zs; CPython Objects/unicodectype.c _PyUnicode_IsWhitespace). Python's re module
 * uses the same set for \s in str patterns (sre category UNI_SPACE -> Py_UNICODE_ISSPACE); checked
 * against CPython 3.11: both give exactly these 29 code points.
 */
export const PY_WHITESPACE = '\t\n\u000b\u000c\r\u001c\u001d\u001e\u001f \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000'

/**
 * Regex source of one Python whitespace character, for building regexes that port Python's \s
 * (e.g. new RegExp(`${PY_SPACE}+`, 'gu')). Use it instead of JS \s in every port of lm-eval code.
 */
export const PY_SPACE = `[${PY_WHITESPACE}]`

const WHITESPACE = new Set(PY_WHITESPACE)
const LEADING = new RegExp(`^${PY_SPACE}+`, 'u')
const TRAILING = new RegExp(`${PY_SPACE}+$`, 'u')
const RUNS = new RegExp(`${PY_SPACE}+`, 'u')

/** str.isspace() of one character (false for '' and for longer strings, as Python's on one char). */
export function pyIsSpace(ch: string): boolean {
  return WHITESPACE.has(ch)
}

/**
 * len(s): the number of code points. A well-formed astral character (a surrogate pair) counts 1; a
 * lone surrogate counts 1, as Python counts the surrogate code point it decodes to.
 */
export function pyLen(s: string): number {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d < 0xe000) i++
    }
    n++
  }
  return n
}

/** s.strip() with no argument: Python whitespace off both ends. */
export function pyStrip(s: string): string {
  return pyRstrip(pyLstrip(s))
}

/** s.lstrip() with no argument. */
export function pyLstrip(s: string): string {
  return s.replace(LEADING, '')
}

/** s.rstrip() with no argument. */
export function pyRstrip(s: string): string {
  return s.replace(TRAILING, '')
}

/** s.split() with no argument: runs of Python whitespace separate, empty pieces are dropped. */
export function pySplit(s: string): string[] {
  return s.split(RUNS).filter(p => p !== '')
}

/** re.split(r"\s+", s) on a str: empty pieces at either end are kept, as Python keeps them. */
export function pyReSplitWhitespace(s: string): string[] {
  return s.split(RUNS)
}

/** s[:-1]: everything but the last code point (not the last UTF-16 unit). */
export function pyDropLast(s: string): string {
  const cps = Array.from(s)
  return cps.slice(0, -1).join('')
}

/** s[0] and s[1:] by code points ('' and '' for an empty string; Python's s[0] would raise). */
export function pyHeadTail(s: string): [string, string] {
  const head = s.length ? String.fromCodePoint(s.codePointAt(0)!) : ''
  return [head, s.slice(head.length)]
}

/**
 * s.lower() / s.upper(): full Unicode case mappings, as JavaScript's toLowerCase/toUpperCase (both
 * apply SpecialCasing and the final-sigma rule). They differ only on characters that the two
 * runtimes' Unicode versions disagree on (Node 20 ships a newer Unicode than most Pythons).
 */
export const pyLower = (s: string): string => s.toLowerCase()
export const pyUpper = (s: string): string => s.toUpperCase()

// Python 3.11 (Unicode 14): code points whose title case (used by str.capitalize() since Python 3.8)
// differs from their upper case: 'ß' -> 'Ss', 'ǆ' -> 'ǅ', Georgian letters stay as they are, Greek
// with ypogegrammeni -> the prosgegrammeni form, ligatures -> 'Ff', 'Fi', ... Generated with
// {c: chr(c).title() for c in range(0x110000) if chr(c).title() != chr(c).upper()}.
const TITLE_EXCEPTIONS_HEX = 'df:00530073,1c4:01c5,1c5:01c5,1c6:01c5,1c7:01c8,1c8:01c8,1c9:01c8,1ca:01cb,1cb:01cb,1cc:01cb,1f1:01f2,1f2:01f2,1f3:01f2,587:05350582,10d0:10d0,10d1:10d1,10d2:10d2,10d3:10d3,10d4:10d4,10d5:10d5,10d6:10d6,10d7:10d7,10d8:10d8,10d9:10d9,10da:10da,10db:10db,10dc:10dc,10dd:10dd,10de:10de,10df:10df,10e0:10e0,10e1:10e1,10e2:10e2,10e3:10e3,10e4:10e4,10e5:10e5,10e6:10e6,10e7:10e7,10e8:10e8,10e9:10e9,10ea:10ea,10eb:10eb,10ec:10ec,10ed:10ed,10ee:10ee,10ef:10ef,10f0:10f0,10f1:10f1,10f2:10f2,10f3:10f3,10f4:10f4,10f5:10f5,10f6:10f6,10f7:10f7,10f8:10f8,10f9:10f9,10fa:10fa,10fd:10fd,10fe:10fe,10ff:10ff,1f80:1f88,1f81:1f89,1f82:1f8a,1f83:1f8b,1f84:1f8c,1f85:1f8d,1f86:1f8e,1f87:1f8f,1f88:1f88,1f89:1f89,1f8a:1f8a,1f8b:1f8b,1f8c:1f8c,1f8d:1f8d,1f8e:1f8e,1f8f:1f8f,1f90:1f98,1f91:1f99,1f92:1f9a,1f93:1f9b,1f94:1f9c,1f95:1f9d,1f96:1f9e,1f97:1f9f,1f98:1f98,1f99:1f99,1f9a:1f9a,1f9b:1f9b,1f9c:1f9c,1f9d:1f9d,1f9e:1f9e,1f9f:1f9f,1fa0:1fa8,1fa1:1fa9,1fa2:1faa,1fa3:1fab,1fa4:1fac,1fa5:1fad,1fa6:1fae,1fa7:1faf,1fa8:1fa8,1fa9:1fa9,1faa:1faa,1fab:1fab,1fac:1fac,1fad:1fad,1fae:1fae,1faf:1faf,1fb2:1fba0345,1fb3:1fbc,1fb4:03860345,1fb7:039103420345,1fbc:1fbc,1fc2:1fca0345,1fc3:1fcc,1fc4:03890345,1fc7:039703420345,1fcc:1fcc,1ff2:1ffa0345,1ff3:1ffc,1ff4:038f0345,1ff7:03a903420345,1ffc:1ffc,fb00:00460066,fb01:00460069,fb02:0046006c,fb03:004600660069,fb04:00460066006c,fb05:00530074,fb06:00530074,fb13:05440576,fb14:05440565,fb15:0544056b,fb16:054e0576,fb17:0544056d'
let titleExceptions: Map<number, string> | undefined
function titleCase(cp: number): string {
  titleExceptions ??= new Map(TITLE_EXCEPTIONS_HEX.split(',').map(e => {
    const [k, v] = e.split(':')
    return [parseInt(k, 16), v.match(/.{4}/g)!.map(h => String.fromCharCode(parseInt(h, 16))).join('')]
  }))
  return titleExceptions.get(cp) ?? String.fromCodePoint(cp).toUpperCase()
}

/**
 * s.capitalize() (Python >= 3.8): the first code point in title case, the rest lower case
 * ('ßa'.capitalize() == 'Ssa', 'ǆEMAL' -> 'ǅemal'; JS toUpperCase would give 'SSa', 'ǄEMAL').
 */
export function pyCapitalize(s: string): string {
  if (!s) return s
  const [head] = pyHeadTail(s)
  // Lower-case the whole string, so the final-sigma rule sees the first letter as Python's does.
  const lowered = s.toLowerCase()
  const headLower = head.toLowerCase()
  const tail = lowered.startsWith(headLower) ? lowered.slice(headLower.length) : s.slice(head.length).toLowerCase()
  return titleCase(head.codePointAt(0)!) + tail
}
