/**
 * tlsfuzzer's TLS 1.3 record-layer and handshake-robustness conversations, ported to external-PSK handshakes
 * (test/peers/tlsfuzzer-psk-conversations.py), against `qkd-tls server`: zero-length and padded records, oversize
 * records and messages, fragmented and coalesced handshake messages, KeyUpdate, change_cipher_spec rules, empty
 * alerts, all-zero inner plaintexts, corrupted tags, legacy and supported versions, cipher suites, HelloRetryRequest
 * and what a second ClientHello may change, unknown groups, many extensions, malformed or plaintext Finished, aborted
 * connections, fresh ServerHello randoms; and malformed server_name extensions (test-invalid-server-name-extension, a
 * TLS 1.2 script: empty extension, list or name, trailing data, a bad list length and two host_names are decode_error
 * or illegal_parameter, names with NUL, BEL, UTF-8 or escape bytes illegal_parameter, an unknown name type ignored;
 * and this server's own rules, RFC 6066 §3: a trailing dot and uppercase are accepted, an IP literal is taken as no
 * name, a label starting with "-" or over 63 bytes is illegal_parameter). tlsfuzzer's own scripts for these expect a
 * certificate-authenticated server; the port keeps their conversations and expected alerts (or says beside one why it
 * differs) and uses tlsfuzzer's framework, vendored, pinned and unmodified (`../shared/vendor`, or TLSFUZZER_VENDOR),
 * under Debian's /usr/bin/python3.
 *
 * Run once with a SHA-256 PSK and once with a SHA-384 one, the server allowing psk_ke and psk_dhe_ke. The
 * script prints tlsfuzzer's summary; the test holds PASS > 0 and no FAIL, naming the failed conversations.
 */
import { join } from 'node:path';
import t from 'tap';
import { findVendor, missingPython, TEST_PEERS_DIR } from './helpers/peers.js';
import { parseSummary, runTlsfuzzerScript, startPskServer } from './helpers/tlsfuzzer.js';

const VENDOR = findVendor(join('tlsfuzzer', 'tlsfuzzer', 'runner.py'));
const SCRIPT = join(TEST_PEERS_DIR, 'tlsfuzzer-psk-conversations.py');
/** Bound on one script run (about 2 s when every conversation goes as expected; a hang costs a timeout). */
const SCRIPT_MS = 90_000;

const PSK_SHA256 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const PSK_SHA384 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f';
const IDENTITY = 'client1';

const skip = missingPython(t, 'tlsfuzzer', VENDOR ? [join(VENDOR, 'tlsfuzzer'), join(VENDOR, 'tlslite-ng')] : undefined, ['ecdsa', 'tlsfuzzer', 'tlslite']);

for (const hash of ['SHA-256', 'SHA-384'] as const) {
  t.test(`tlsfuzzer conversations ported to a ${hash} PSK`, { timeout: SCRIPT_MS + 30_000, skip }, async (tt) => {
    const psk = hash === 'SHA-256' ? PSK_SHA256 : PSK_SHA384;
    const port = await startPskServer(tt, psk, IDENTITY, hash);
    const args = ['-h', '127.0.0.1', '-p', String(port), '--psk', psk, '--psk-iden', IDENTITY];
    if (hash === 'SHA-384') args.push('--psk-sha384');
    const run = await runTlsfuzzerScript(VENDOR!, SCRIPT, args, SCRIPT_MS);
    const summary = parseSummary(run.output);
    tt.ok(summary, 'the script printed its summary', { output: run.output.slice(-3000) });
    if (!summary) return;
    tt.ok(summary.pass > 0, `${summary.pass} conversations passed`);
    tt.same(summary.failed, [], 'no conversation failed', { failed: summary.failed, output: run.output.slice(-3000) });
    tt.equal(summary.fail, 0, 'FAIL count');
    tt.equal(summary.total, summary.pass + summary.fail, 'the counts add up (every conversation ran)');
    // Each family of the port ran (a conversation dropped by mistake from the script would show here).
    for (const family of ['zero-length-data', 'record-padding', 'keyupdate', 'record-layer-limits', 'ccs', 'multiple-ccs-messages', 'empty-alert', 'legacy-version', 'version-negotiation', 'invalid-ciphers', 'nociphers', 'hrr', 'unrecognised-groups', 'large-number-of-extensions', 'finished', 'zero-content-type', 'finished-plaintext', 'unencrypted-alert', 'symetric-ciphers', 'lengths', 'keyshare-omitted', 'shuffled-extentions', 'connection-abort', 'serverhello-random', 'obsolete-curves', 'invalid-server-name-extension']) {
      tt.ok(run.output.includes(`\n${family}: `), `conversations from test-${family === 'invalid-server-name-extension' ? '' : 'tls13-'}${family} ran`);
    }
    tt.ok(run.output.includes('\nframing (PSK port): '), 'the framing conversations modelled on them ran');
    tt.equal(run.code, 0, 'the script exits 0');
  });
}
