/**
 * Which shared options belong to one role only: the one table that `qkd-tls server`, `client` and `proxy` check
 * against, and that the "(client)" / "(server)" markers of the help texts (bin/cli/tls-options.ts,
 * bin/cli/key-source.ts) must agree with (test/cli-roles.test.ts checks both ways). An option of the other
 * role was silently ignored before (`qkd-tls server --early-data F` ran as if it had not been given).
 */
import { UsageError } from './tls-options.js';

export type Role = 'client' | 'server';

/** Option name (without the dashes) → the only role that uses it. Options absent here serve both roles. */
export const ROLE_OF_OPTION = {
  // TLS options (TLS_OPTION_SPEC)
  'key-shares': 'client',
  'early-data': 'client',
  'server-name': 'client',
  'no-middlebox-compat': 'client',
  'max-early-data': 'server',
  // key-source options (KEY_SOURCE_OPTION_SPEC): the client's key pool and what it asks its KME for
  'kme-pool': 'client',
  'key-lifetime': 'client',
  'key-bits': 'client',
  'offer-keys': 'client',
} as const satisfies Record<string, Role>;

/**
 * Refuses an option of the other role among `values` (util.parseArgs values: a key is present only when the
 * option was given): "--early-data is a client option", a UsageError (exit 2, prefixed with the command).
 * `given`: which of them count (default all); a proxy config's service passes only the fields set in its own
 * section, since the global section's defaults serve services of both roles.
 */
export function refuseOtherRoleOptions(role: Role, values: Record<string, unknown>, given: (name: string) => boolean = () => true): void {
  for (const [name, owner] of Object.entries(ROLE_OF_OPTION)) {
    if (owner !== role && values[name] !== undefined && given(name)) throw new UsageError(`--${name} is a ${owner} option`);
  }
}
