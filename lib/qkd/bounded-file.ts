/**
 * Reading a file named by a user (a command-line option, the proxy's configuration file) with a bound on its
 * size: a path to something endless (/dev/zero, /dev/urandom, a pipe that keeps writing) must end in an error,
 * not in a read that grows memory without end.
 * A regular file is judged by its size before a byte is read; anything else is read until its end or until
 * one byte past the bound.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** The file holds more than the bound (`limit` bytes). */
export class FileTooLargeError extends Error {
  constructor(
    readonly path: string,
    readonly limit: number,
  ) {
    super(`${path} is larger than ${limit} bytes (${describeBytes(limit)}), the most that is read`);
    this.name = 'FileTooLargeError';
  }
}

const CHUNK_BYTES = 64 * 1024;

/**
 * The most read from a file an option names (--psk-file, --kme-ca/--kme-cert/--kme-key, --early-data) or from a
 * proxy configuration file (readConfigFile): far above any key file, certificate, configuration or 0-RTT
 * message, and a bound on a path to something endless.
 */
export const MAX_OPTION_FILE_BYTES = 64 * 1024 * 1024;

/**
 * The bytes of `path`, at most `limit` of them; FileTooLargeError beyond; the fs errors (ENOENT, EISDIR, ...) as they
 * are. The file may hold keys (fileKeySource, --psk-file, --kme-key): the buffers read into are wiped before this
 * returns, so the returned one is the only copy, which the caller wipes once it has read it.
 */
export function readFileBounded(path: string, limit: number): Buffer {
  const fd = openSync(path, 'r');
  const chunks: Buffer[] = [];
  let buffer: Buffer | undefined;
  try {
    const stat = fstatSync(fd);
    if (stat.isFile() && stat.size > limit) throw new FileTooLargeError(path, limit);
    let total = 0;
    // One buffer for every read, and a copy of what each read returned: memory follows the bytes read, not the
    // number of reads (a slow source such as a pipe may return one byte a read).
    buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      // One byte past the bound is enough to know it is passed.
      const n = readSync(fd, buffer, 0, Math.min(CHUNK_BYTES, limit + 1 - total), null);
      if (n === 0) break;
      chunks.push(Buffer.from(buffer.subarray(0, n)));
      total += n;
      if (total > limit) throw new FileTooLargeError(path, limit);
    }
    return Buffer.concat(chunks, total);
  } finally {
    buffer?.fill(0);
    for (const c of chunks) c.fill(0);
    closeSync(fd);
  }
}

/**
 * The text (UTF-8) of `path`, at most `limit` bytes of it, as {@link readFileBounded} reads it; the bytes are wiped
 * once decoded, so the string is all that is left of them (a file that may hold keys: a key file, a private key,
 * a proxy configuration with PSKs).
 */
export function readTextFileBounded(path: string, limit: number): string {
  const bytes = readFileBounded(path, limit);
  try {
    return bytes.toString('utf8');
  } finally {
    bytes.fill(0);
  }
}

function describeBytes(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`;
}
