import fs from 'node:fs'

/** The harness version from package.json; part of every run's provenance. */
export const HARNESS_VERSION: string = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version
