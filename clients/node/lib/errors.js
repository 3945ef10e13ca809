'use strict';
// The package's one error class. Transport failures and the server's error answers
// are all a FixrxError; a caller's abort rejects with the signal's reason, as fetch does.

/** Every failure of this package: an HTTP error answer, a transport failure, or the deadline. */
class FixrxError extends Error {
  /**
   * @param {string} message
   * @param {{ status?: number, code: string, field?: string, retryAfterMs?: number,
   *           attempts?: number, cause?: unknown }} details
   */
  constructor(message, { status, code, field, retryAfterMs, attempts, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'FixrxError';
    /** HTTP status of the server's answer; undefined for transport failures and the deadline. */
    this.status = status;
    /** The server's `error.code` (e.g. `validation_failed`), or `network` / `timeout` / `deadline_exceeded`. */
    this.code = code;
    /** The offending field on a `422`, when the server names one. */
    this.field = field;
    /** On `429`: the server's `Retry-After`, in milliseconds. */
    this.retryAfterMs = retryAfterMs;
    /** How many attempts were made before this error was thrown. */
    this.attempts = attempts;
  }
}

module.exports = { FixrxError };
