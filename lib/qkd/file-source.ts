/**
 * Pre-shared keys from a text file, one per line:
 *
 * ```
 * # identity            key (hex)                                                          [hash]    [priority]
 * client1               000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
 * backup                9f8e...                                                            SHA-384   1
 * ```
 *
 * Fields are separated by spaces or tabs; the identity is text without spaces (as the PSK identity, or with the
 * importer as the external identity); the hash is SHA-256 (default) or SHA-384; the priority is a whole number,
 * lower offered first (default 0); each at most once on a line. Blank lines and lines starting with # are skipped. The file should be
 * readable by its owner only.
 *
 * Node-only (reads the file).
 */
import { fromHex, utf8, wipe } from '../codec/bytes.js';
import type { HashName } from '../crypto/provider.js';
import { StaticKeySource, type SourcedKey, type StaticKeySourceOptions } from '../psk/source.js';
import { MAX_OPTION_FILE_BYTES, readTextFileBounded } from './bounded-file.js';

/** Parses the text of a key file (see above). Throws an Error naming the line for anything malformed. */
export function parseKeyFile(text: string, name = 'key file'): SourcedKey[] {
  const keys: SourcedKey[] = [];
  const seen = new Set<string>();
  const lines = text.split(/\r?\n/);
  try {
    lines.forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const where = `${name}, line ${i + 1}`;
      const fields = line.split(/[ \t]+/);
      if (fields.length < 2 || fields.length > 4) throw new Error(`${where}: expected "IDENTITY HEXKEY [SHA-256|SHA-384] [PRIORITY]"`);
      const [identity, hex, ...rest] = fields;
      if (seen.has(identity)) throw new Error(`${where}: identity '${identity}' appears twice`);
      seen.add(identity);
      let hash: HashName | undefined;
      let priority: number | undefined;
      // Fields are named by position, never quoted: one may be the second half of a key with a stray space.
      for (const [i, f] of rest.entries()) {
        if (f === 'SHA-256' || f === 'SHA-384') {
          // Twice on one line is ambiguous (which was meant?): refused, not settled by taking the last.
          if (hash !== undefined) throw new Error(`${where}: fields 3 and 4 are both a hash (SHA-256, SHA-384); a line gives at most one`);
          hash = f;
        } else if (/^\d{1,9}$/.test(f)) {
          if (priority !== undefined) throw new Error(`${where}: fields 3 and 4 are both a priority; a line gives at most one`);
          priority = Number(f);
        } else throw new Error(`${where}: field ${i + 3} is neither a hash (SHA-256, SHA-384) nor a priority`);
      }
      let secret: Uint8Array;
      try {
        secret = fromHex(hex);
      } catch {
        throw new Error(`${where}: the key is not hex`);
      }
      if (secret.length === 0) throw new Error(`${where}: the key is empty`);
      const id = utf8(identity);
      if (id.length > 0xffff) throw new Error(`${where}: the identity is longer than 65535 bytes`);
      keys.push({ identity: id, secret, hash: hash ?? 'SHA-256', priority: priority ?? 0, label: identity });
    });
  } catch (e) {
    for (const k of keys) wipe(k.secret);
    throw e;
  }
  if (keys.length === 0) throw new Error(`${name}: no key in it`);
  return keys;
}

/**
 * A {@link StaticKeySource} with the keys of `path`, of which at most {@link MAX_OPTION_FILE_BYTES} (64 MiB) is
 * read, as of `--psk-file` (a path to something endless, /dev/zero, is an error, not a read without end). The
 * parsed buffers are wiped once the source holds its own copies; `close()` wipes those.
 */
export function fileKeySource(path: string, options: StaticKeySourceOptions = {}): StaticKeySource {
  let text: string;
  try {
    text = readTextFileBounded(path, MAX_OPTION_FILE_BYTES); // the keys, in hex: the text is all that is kept of them (parsed and dropped below)
  } catch (e) {
    throw new Error(`cannot read the key file ${path}: ${(e as Error).message}`, { cause: e });
  }
  const keys = parseKeyFile(text, path);
  try {
    return new StaticKeySource(keys, { description: `${keys.length} key(s) from ${path}${options.oneTime ? ' (one-time)' : ''}`, ...options });
  } finally {
    for (const k of keys) wipe(k.secret);
  }
}
