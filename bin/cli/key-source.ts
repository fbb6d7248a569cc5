/**
 * Where the commands get their pre-shared keys. Static: `--psk HEX --identity STR` (repeatable, paired in
 * order; `--psk-hash` SHA-256 or SHA-384, default SHA-256 as OpenSSL and GnuTLS assume).
 */
import { fromHex, utf8 } from '../../lib/codec/bytes.js';
import type { HashName } from '../../lib/crypto/provider.js';
import type { Psk } from '../../lib/psk/types.js';
import type { AsyncPskResolver } from '../../lib/transport/node.js';
import { UsageError } from './tls-options.js';

export const KEY_SOURCE_OPTION_SPEC = {
  psk: { type: 'string', multiple: true },
  identity: { type: 'string', multiple: true },
  'psk-hash': { type: 'string' },
} as const;

export const KEY_SOURCE_HELP = `Key source:
  --psk HEX --identity STR   a static pre-shared key (hex) and the identity that names it; repeat both to
                             offer (client) or accept (server) several
  --psk-hash NAME            the hash the static keys are bound to: SHA-256 (default) or SHA-384`;

export interface KeySource {
  /** Client: the keys to offer on one new connection. */
  clientPsks(): Promise<readonly Psk[]>;
  /** Server: static keys, or an asynchronous lookup by identity. */
  readonly server: readonly Psk[] | AsyncPskResolver;
  /** One line for logs (never key material). */
  readonly description: string;
  close(): void;
}

export function parseKeySource(values: Record<string, unknown>): KeySource {
  const hexes = (values.psk as string[] | undefined) ?? [];
  const ids = (values.identity as string[] | undefined) ?? [];
  const hashName = (values['psk-hash'] as string | undefined) ?? 'SHA-256';
  if (hashName !== 'SHA-256' && hashName !== 'SHA-384') throw new UsageError('--psk-hash must be SHA-256 or SHA-384');
  if (hexes.length === 0) throw new UsageError('a key source is required: --psk HEX --identity STR');
  if (hexes.length !== ids.length) throw new UsageError(`${hexes.length} --psk but ${ids.length} --identity: give them in pairs`);
  const psks: Psk[] = hexes.map((h, i) => {
    let secret: Uint8Array;
    try {
      secret = fromHex(h);
    } catch {
      throw new UsageError(`--psk #${i + 1}: not hex`);
    }
    if (secret.length === 0) throw new UsageError(`--psk #${i + 1} is empty`);
    if (ids[i].length === 0) throw new UsageError(`--identity #${i + 1} is empty`);
    return { identity: utf8(ids[i]), secret, hash: hashName as HashName };
  });
  return {
    clientPsks: async () => psks,
    server: psks,
    description: `static PSK${psks.length > 1 ? 's' : ''} (${ids.join(', ')})`,
    close() {},
  };
}
