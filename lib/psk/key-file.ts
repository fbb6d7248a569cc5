/**
 * Pre-shared keys as text, one per line (the format of a key file, `--psk-file`):
 *
 * ```
 * # identity            key (hex)                                                          [hash]    [priority]
 * client1               000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
 * backup                9f8e...                                                            SHA-384   1
 * ```
 *
 * Fields are separated by spaces or tabs; the identity is text without spaces (as the PSK identity, or with the
 * importer as the external identity); the hash is SHA-256 or SHA-384 (default SHA-256, or the caller's); the priority is a whole number,
 * lower offered first (default 0); each at most once on a line. Blank lines and lines starting with # are skipped.
 *
 * Runtime-neutral: it parses text (fetched, pasted or bundled in a page, a Worker, Deno or Bun); reading the file
 * is `fileKeySource` (lib/qkd/file-source.ts, Node-only). The keys it returns belong to the caller, who wipes their
 * secrets once done (e.g. once a StaticKeySource, which keeps copies of its own, is made of them).
 */
import { fromHex, utf8, wipe } from '../codec/bytes.js';
import type { HashName } from '../crypto/provider.js';
import type { SourcedKey } from './source.js';
import { TransportError } from '../errors.js';

/**
 * Parses the text of a key file (see above); `name` (a path, say) prefixes each error; `defaultHash` is the hash of
 * the lines that name none (a line's own hash always wins). Throws an Error naming the line for anything malformed
 * (never quoting a key), after wiping the keys parsed before it.
 */
export function parseKeyFile(text: string, name = 'key file', defaultHash: HashName = 'SHA-256'): SourcedKey[] {
  const invalid = (message: string): TransportError => new TransportError('ERR_QKD_KEY_FILE_INVALID', message);
  const keys: SourcedKey[] = [];
  const seen = new Set<string>();
  const lines = text.split(/\r?\n/);
  try {
    lines.forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const where = `${name}, line ${i + 1}`;
      const fields = line.split(/[ \t]+/);
      if (fields.length < 2 || fields.length > 4) throw invalid(`${where}: expected "IDENTITY HEXKEY [SHA-256|SHA-384] [PRIORITY]"`);
      const [identity, hex, ...rest] = fields;
      if (seen.has(identity)) throw invalid(`${where}: identity '${identity}' appears twice`);
      seen.add(identity);
      let hash: HashName | undefined;
      let priority: number | undefined;
      // Fields are named by position, never quoted: one may be the second half of a key with a stray space.
      for (const [i, f] of rest.entries()) {
        if (f === 'SHA-256' || f === 'SHA-384') {
          // Twice on one line is ambiguous (which was meant?): refused, not settled by taking the last.
          if (hash !== undefined) throw invalid(`${where}: fields 3 and 4 are both a hash (SHA-256, SHA-384); a line gives at most one`);
          hash = f;
        } else if (/^\d{1,9}$/.test(f)) {
          if (priority !== undefined) throw invalid(`${where}: fields 3 and 4 are both a priority; a line gives at most one`);
          priority = Number(f);
        } else throw invalid(`${where}: field ${i + 3} is neither a hash (SHA-256, SHA-384) nor a priority`);
      }
      let secret: Uint8Array;
      try {
        secret = fromHex(hex);
      } catch {
        throw invalid(`${where}: the key is not hex`);
      }
      if (secret.length === 0) throw invalid(`${where}: the key is empty`);
      const id = utf8(identity);
      if (id.length > 0xffff) throw invalid(`${where}: the identity is longer than 65535 bytes`);
      keys.push({ identity: id, secret, hash: hash ?? defaultHash, priority: priority ?? 0, label: identity });
    });
  } catch (e) {
    for (const k of keys) wipe(k.secret);
    throw e;
  }
  if (keys.length === 0) throw invalid(`${name}: no key in it`);
  return keys;
}
