// The shape of one malformed-input case: how to build it, what the CLI must answer.

export interface Fixtures {
  /** A valid tiny Mixtral checkpoint (shared, read-only: copy it with `model()` before changing it). */
  baseModel: string
  /** Copies the valid checkpoint into `dir/model` (or `dir/<name>`) and returns the folder. */
  model(dir: string, name?: string): string
  /** Writes a valid harness results database (a few runs and samples) at `file` and returns it. */
  harnessDb(file: string): string
  /** Writes someone else's SQLite database (a `notes` table) at `file` and returns it. */
  foreignDb(file: string): string
  /** Writes a harness config (default export of `config`) at `dir/<name>` and returns its path. */
  config(dir: string, config: unknown, name?: string): string
}

export interface MalformedCase {
  /** Unique kebab-case id, shown in the test name and used as the case's folder name. */
  name: string
  /**
   * Builds the inputs inside `dir` (the case's own empty folder, which is also the CLI's working
   * directory) and returns the CLI arguments.
   */
  setup(dir: string, fx: Fixtures): string[]
  /**
   * Accepted `error [CODE]:` codes. 'USAGE' is commander's own usage error (`error: ...`, exit 2),
   * raised before any command runs. 'OK' marks a valid input in an unusual place: exit 0, `message`
   * matched on stdout or stderr (with other codes: either a clean success or one of those errors).
   */
  code: string | readonly string[]
  /** What the message must say (it names the problem: the file, field or value). */
  message: RegExp
  /** Paths (relative to the case folder) the command may create; everything else must be unchanged. */
  mayCreate?: readonly string[]
  /** Needs an unprivileged user (permission cases); run as `nobody` when the tests run as root. */
  unprivileged?: boolean
  /** Whose area makes this case pass (for the report when it fails). */
  area?: string
}
