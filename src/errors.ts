// Every error a user can see, with a stable code. Messages are one line each and name
// the path of the bad field or the address that failed; no user ever needs a stack trace.

/** One problem found in a config: `path: message`, as `ringlb check` prints it. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export abstract class RinglbError extends Error {
  abstract readonly code: string;
  /** The lines to print on stderr, one per problem. */
  lines(): string[] {
    return [this.message];
  }
}

/** A config that failed validation; carries every problem, not just the first. */
export class ConfigError extends RinglbError {
  readonly code = 'RINGLB_ERR_CONFIG';
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
    this.name = 'ConfigError';
  }
  override lines(): string[] {
    return this.problems.map((p) => `${p.path}: ${p.message}`);
  }
}

/** A config file that could not be read or is not JSON; `file` names it. */
export class ConfigFileError extends RinglbError {
  readonly code = 'RINGLB_ERR_CONFIG_FILE';
  constructor(
    readonly file: string,
    readonly detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = 'ConfigFileError';
  }
}

/** A listener (proxy or admin) that could not be bound. */
export class ListenError extends RinglbError {
  readonly code = 'RINGLB_ERR_LISTEN';
  constructor(
    readonly address: string,
    readonly reason: string,
  ) {
    super(`listen ${address}: ${reason}`);
    this.name = 'ListenError';
  }
}

/** A command-line argument that is not what the command expects. */
export class UsageError extends RinglbError {
  readonly code = 'RINGLB_ERR_USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Workers under a cluster primary that failed to start or to apply a reload; one line each. */
export class WorkerError extends RinglbError {
  readonly code = 'RINGLB_ERR_WORKER';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'WorkerError';
  }
  override lines(): string[] {
    return [...this.problems];
  }
}

/** Every code above; a unit test checks each one is documented in docs/errors.md. */
export const ERROR_CODES = [
  'RINGLB_ERR_CONFIG',
  'RINGLB_ERR_CONFIG_FILE',
  'RINGLB_ERR_LISTEN',
  'RINGLB_ERR_USAGE',
  'RINGLB_ERR_WORKER',
] as const;
