/**
 * Pre-shared keys from a text file, read by {@link fileKeySource}: the format (one key a line, identity, hex key,
 * optional hash and priority) is described and parsed by `parseKeyFile` in lib/psk/key-file.ts, which is
 * runtime-neutral. The file should be readable by its owner only.
 *
 * Node-only: fileKeySource reads the file (./bounded-file.js); parseKeyFile, for text in hand, is in
 * qkd-tls/browser too.
 */
import { wipe } from '../codec/bytes.js';
import { TransportError } from '../errors.js';
import { parseKeyFile } from '../psk/key-file.js';
import { StaticKeySource, type StaticKeySourceOptions } from '../psk/source.js';
import { MAX_OPTION_FILE_BYTES, readTextFileBounded } from './bounded-file.js';

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
    throw new TransportError('ERR_QKD_KEY_UNAVAILABLE', `cannot read the key file ${path}: ${(e as Error).message}`, { cause: e });
  }
  const keys = parseKeyFile(text, path);
  try {
    return new StaticKeySource(keys, { description: `${keys.length} key(s) from ${path}${options.oneTime ? ' (one-time)' : ''}`, ...options });
  } finally {
    for (const k of keys) wipe(k.secret);
  }
}
