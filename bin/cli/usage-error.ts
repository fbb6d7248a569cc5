/** A bad command line or option value: the command reports its message in one line and exits 2. */
export class UsageError extends Error {}
