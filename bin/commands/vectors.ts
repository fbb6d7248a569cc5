/**
 * `qkd-tls vectors`: replays the example handshakes of RFC 8448 through this stack's key schedule, message
 * codecs and record layer (vectors/replay.ts) and prints one PASS/FAIL row per recomputed value.
 * Exit code 0 only when every check passes.
 */
import { parseArgs } from 'node:util';
import { type CryptoProvider, nobleProvider } from 'qkd-tls';
import { nodeProvider } from 'qkd-tls/node';
import { extractRfc8448, Rfc8448FormatError } from '../../vectors/extract-rfc8448.js';
import { countBySection, runRfc8448Checks, type Check } from '../../vectors/replay.js';
import type { Rfc8448 } from '../../vectors/rfc8448.js';
import { usageError } from '../cli/command.js';
import { FileTooLargeError, readTextFileBounded } from 'qkd-tls/qkd';

/**
 * The most --file reads. The text of RFC 8448 is 160 KB, its drafts alike; the bound is far above any trace
 * text, and keeps a path to something endless (/dev/zero, a pipe) from being read forever.
 */
export const MAX_VECTORS_FILE_BYTES = 64 * 1024 * 1024;

export const HELP = `usage: qkd-tls vectors [--file PATH] [--json] [--provider noble|node]

Replays the five example handshakes of RFC 8448 (Example Handshake Traces for TLS 1.3): from the RFC's
private keys and handshake messages it recomputes every (EC)DHE secret, key-schedule secret, traffic key
and IV, transcript hash, Finished, the resumption PSK and 0-RTT binder, and decrypts and re-encrypts every
record, comparing each with the bytes the RFC prints. By default it replays the traces committed with
qkd-tls (vectors/rfc8448.json, extracted from the RFC); --file replays any text in the same layout.

options:
  --file PATH       replay the traces in PATH: the text of RFC 8448 or of one of its Internet-Draft versions
                    (draft-ietf-tls-tls13-vectors), or any trace text laid out the same way (sections 3 to 7,
                    "{client}"/"{server}" steps, labelled hex values with their octet counts), of at most
                    ${MAX_VECTORS_FILE_BYTES / (1024 * 1024)} MiB
  --provider NAME   the cryptography backend: noble (pure JavaScript, the default) or node (node:crypto)
  --json            one JSON object per check, then a summary object
  -h, --help        this help

Exit code: 0 when every check passes, 1 when one fails or the text is not laid out as RFC 8448, 2 for a
usage error (a --file that cannot be read, is empty or is too large).`;

const PROVIDERS: Readonly<Record<string, CryptoProvider>> = { noble: nobleProvider, node: nodeProvider };

export async function run(argv: string[]): Promise<number> {
  let values: { json?: boolean; provider?: string; file?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean' },
        provider: { type: 'string' },
        file: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    return usageError('vectors', (e as Error).message);
  }
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const providerName = values.provider ?? 'noble';
  const crypto = Object.hasOwn(PROVIDERS, providerName) ? PROVIDERS[providerName] : undefined;
  if (!crypto) {
    process.stderr.write(`qkd-tls vectors: unknown provider '${providerName}' (use noble or node)\n`);
    return 2;
  }

  let data: Rfc8448 | undefined;
  if (values.file !== undefined) {
    let text: string;
    try {
      text = readTextFileBounded(values.file, MAX_VECTORS_FILE_BYTES);
    } catch (e) {
      if (e instanceof FileTooLargeError) {
        process.stderr.write(`qkd-tls vectors: --file ${e.message}\n`);
        return 2;
      }
      process.stderr.write(`qkd-tls vectors: cannot read ${values.file}: ${(e as Error).message}\n`);
      return 2;
    }
    // An empty file is not a trace text at all: a usage error naming the file, as one too large is (it was reported
    // as a missing section heading at "line 0").
    if (text.trim() === '') {
      process.stderr.write(`qkd-tls vectors: --file ${values.file} is empty: there are no traces in it to replay\n`);
      return 2;
    }
    try {
      data = extractRfc8448(text);
    } catch (e) {
      if (!(e instanceof Rfc8448FormatError)) throw e;
      process.stderr.write(`qkd-tls vectors: ${values.file}: ${e.message}\n`);
      return 1;
    }
  }
  const checks = runRfc8448Checks(crypto, data);
  const failed = checks.filter((c) => !c.pass).length;
  const out = (line: string) => process.stdout.write(line + '\n');
  if (values.json) {
    for (const c of checks) out(JSON.stringify({ event: 'check', ...c }));
    out(JSON.stringify({ event: 'summary', source: data ? values.file : 'vectors/rfc8448.json', provider: crypto.name, total: checks.length, passed: checks.length - failed, failed, sections: countBySection(checks) }));
  } else {
    for (const line of formatTable(checks)) out(line);
    out('');
    out(summaryLine(checks, crypto.name, data ? `${values.file} (${data.source})` : undefined));
  }
  return failed === 0 && checks.length > 0 ? 0 : 1;
}

/** The table: section, result, check; a failure's detail on the line below it. */
export function formatTable(checks: readonly Check[]): string[] {
  const lines = ['SECTION  RESULT  CHECK'];
  for (const c of checks) {
    lines.push(`§${c.section.padEnd(7)} ${c.pass ? 'PASS' : 'FAIL'}    ${c.name}`);
    if (!c.pass && c.detail) lines.push(`                 ${c.detail}`);
  }
  return lines;
}

/** E.g. "RFC 8448: 281 of 281 checks pass (§3 57/57, §4 69/69, ...) with the noble provider". */
export function summaryLine(checks: readonly Check[], provider: string, source?: string): string {
  const per = Object.entries(countBySection(checks)).map(([s, n]) => {
    const ok = checks.filter((c) => c.section === s && c.pass).length;
    return `§${s} ${ok}/${n}`;
  });
  const passed = checks.filter((c) => c.pass).length;
  const verdict = passed === checks.length ? 'pass' : `pass, ${checks.length - passed} FAIL`;
  return `${source ?? 'RFC 8448'}: ${passed} of ${checks.length} checks ${verdict} (${per.join(', ')}) with the ${provider} provider`;
}
