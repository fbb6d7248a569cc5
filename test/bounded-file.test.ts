/**
 * readFileBounded (lib/qkd/bounded-file.ts), what the CLI reads option files with: a bound on the bytes read,
 * and memory that follows the bytes read, not the number of reads. A pipe that delivers one byte a read used to
 * hold a fresh 64 KiB buffer per read (found by review: 175 MiB of buffers for 3,000 bytes).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FileTooLargeError, MAX_OPTION_FILE_BYTES, readFileBounded } from '../lib/qkd/bounded-file.js';
import { ConfigError, readConfigFile } from '../lib/proxy/config-file.js';
import { fileKeySource } from '../lib/qkd/file-source.js';

t.test('a regular file within the bound is read whole; one byte more is FileTooLargeError', async (tt) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-tls-bounded-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'f');
  writeFileSync(file, Buffer.alloc(1000, 7));
  tt.same(readFileBounded(file, 1000), Buffer.alloc(1000, 7));
  tt.throws(() => readFileBounded(file, 999), FileTooLargeError);
});

t.test('a pipe delivering one byte a read: the buffers held follow the bytes, not the reads', async (tt) => {
  const dir = mkdtempSync(join(tmpdir(), 'qkd-tls-bounded-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'pipe');
  execFileSync('mkfifo', [fifo]);
  const BYTES = 400;
  // A writer in another process (readFileBounded blocks this one), one byte per write, a moment apart so that
  // most reads return one byte.
  const writer = spawn(process.execPath, [
    '-e',
    `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(fifo)},'w');let i=0;` +
      `const step=()=>{if(i++===${BYTES}){fs.closeSync(fd);return;}fs.writeSync(fd,Buffer.of(0x61));setTimeout(step,1);};step();`,
  ]);
  tt.teardown(() => writer.kill());
  const before = process.memoryUsage().arrayBuffers;
  // (The read blocks this thread: what it allocated is measured right after it, before a collection can run.)
  const bytes = readFileBounded(fifo, 1 << 20);
  const peak = process.memoryUsage().arrayBuffers;
  tt.equal(bytes.length, BYTES, 'every byte read');
  tt.ok(bytes.every((b) => b === 0x61), 'as written');
  // Held per read before the fix: 64 KiB, so 400 one-byte reads held about 25 MiB until the read ended.
  tt.ok(peak - before < 8 * 1024 * 1024, `buffers grew by ${((peak - before) / 1048576).toFixed(1)} MiB for ${BYTES} bytes`);
});

t.test("the library's readConfigFile (qkd-tls/proxy) reads with the same bound: /dev/zero is a ConfigError", async (tt) => {
  // It read its path whole (readFileSync), so /dev/zero was read until memory ran out; only the CLI was bounded.
  let error: unknown;
  try {
    readConfigFile('/dev/zero', { global: {}, service: {} });
  } catch (e) {
    error = e;
  }
  tt.ok(error instanceof ConfigError, 'a ConfigError');
  tt.match((error as Error).message, /^\/dev\/zero: cannot read the configuration file: \/dev\/zero is larger than 67108864 bytes \(64 MiB\)/);
  tt.equal(MAX_OPTION_FILE_BYTES, 64 * 1024 * 1024, 'the bound of the file options');
});

// readFileBounded read into a 64 KiB buffer and a copy per read, then joined them: none was wiped, so the keys (in
// hex) stayed in three buffers, where readFileSync had left one. Every Buffer made while the file is read is
// recorded, and none may still hold the key's text.
const KEY_HEX = '5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2'; // 32 bytes
const keyFileReaders: [string, string, (file: string) => () => void][] = [
  ['fileKeySource', `alpha ${KEY_HEX}\n`, (file) => {
    const source = fileKeySource(file);
    return () => source.close();
  }],
  ["the library's readConfigFile (a proxy configuration with a PSK)", `[web]\npsk = ${KEY_HEX}\nidentity = web-key\n`, (file) => {
    readConfigFile(file, { global: {}, service: { psk: { type: 'string', multiple: true }, identity: { type: 'string', multiple: true } } });
    return () => {};
  }],
];

for (const [name, content, read] of keyFileReaders) {
  t.test(`${name} leaves no copy of the file's bytes in the buffers it read them into`, async (tt) => {
    const dir = mkdtempSync(join(tmpdir(), 'qkd-tls-bounded-'));
    tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'keys.txt');
    writeFileSync(file, content, { mode: 0o600 });
    const made: Buffer[] = [];
    const originals = { allocUnsafe: Buffer.allocUnsafe, from: Buffer.from, concat: Buffer.concat };
    const record =
      <F extends (...a: never[]) => Buffer>(f: F) =>
      (...a: Parameters<F>): Buffer => {
        const b = f.apply(Buffer, a);
        made.push(b);
        return b;
      };
    Object.assign(Buffer, { allocUnsafe: record(originals.allocUnsafe), from: record(originals.from as never), concat: record(originals.concat) });
    let close: () => void = () => {};
    try {
      close = read(file);
    } finally {
      Object.assign(Buffer, originals);
    }
    tt.teardown(close);
    tt.ok(made.length >= 3, 'the read buffer, the copy of the read and the joined bytes were recorded');
    const left = made.filter((b) => b.includes(KEY_HEX));
    tt.equal(left.length, 0, "no buffer still holds the key's text");
  });
}
