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
 * name, a label starting with "-" or over 63 bytes is illegal_parameter). And the key exchange (the group scripts:
 * ecdhe-curves, crfg-curves, ffdhe-groups, ffdhe-sanity, dhe-shared-secret-padding, no-unknown-groups, mlkem; and
 * 0rtt-garbage): a handshake in each group; shares of the wrong length, off the curve, of small order (an all-zero
 * X25519 secret) or out of 1 < Y < p-1 are illegal_parameter, an empty one decode_error; groups the server does not
 * implement (secp521r1, x448) handshake_failure, or a HelloRetryRequest for one it does; handshakes repeated until
 * the DH shared secret and the server's share each start with a zero byte, both sides agreeing on the left-padded
 * value (RFC 8446 §7.4.1, §7.4.2; a few hundred ServerHellos per group, a few seconds); 256-group lists of unknown
 * groups; malformed ML-KEM hybrid shares (no ML-KEM on the client side: kyber-py is not available); with psk_ke,
 * shares ignored and no group in common no failure; and 0-RTT data the server, with 0-RTT off, skips up to its limit. tlsfuzzer's own scripts for these expect a
 * certificate-authenticated server; the port keeps their conversations and expected alerts (or says beside one why it
 * differs) and uses tlsfuzzer's framework, vendored, pinned and unmodified (`../shared/vendor`, or TLSFUZZER_VENDOR),
 * under Debian's /usr/bin/python3.
 *
 * Run once with a SHA-256 PSK and once with a SHA-384 one, the server allowing psk_ke and psk_dhe_ke and every group
 * it implements (its default list leaves out ffdhe4096, ffdhe6144 and ffdhe8192). The script prints tlsfuzzer's
 * summary; the test holds PASS > 0 and no FAIL, naming the failed conversations.
 */
import { join } from 'node:path';
import t from 'tap';
import { findVendor, missingPython, TEST_PEERS_DIR } from './helpers/peers.js';
import { parseSummary, runTlsfuzzerScript, startPskServer } from './helpers/tlsfuzzer.js';

const VENDOR = findVendor(join('tlsfuzzer', 'tlsfuzzer', 'runner.py'));
const SCRIPT = join(TEST_PEERS_DIR, 'tlsfuzzer-psk-conversations.py');
/**
 * Bound on one script run (about 17 s when every conversation goes as expected, most of it the shared-secret padding
 * hunts; a hang costs a timeout). The hunts (DhPaddingHunt) take as many handshakes as luck wants: in each of five
 * groups until both a shared secret and a server share started with a zero byte, each 1/256 a handshake, so 384 on
 * average and more than 4000 (where a hunt gives up) with odds of 3.2e-7. At 10, 22, 6.5, 12.5 and 25 ms a handshake
 * (secp256r1, secp384r1, x25519, ffdhe2048, ffdhe3072; 2 cores at a load of 9-10, 2026-12-07) and ~17 s for the
 * rest of the script, the odds that a run needs more than this bound are ~1e-25 at that speed, ~5e-11 at 1.5x
 * slower and ~4e-7 at 2x slower (150 s had ~2e-7, ~6e-4 and ~2e-2): a busy machine does not fail it.
 */
const SCRIPT_MS = 290_000;
/** Every group the server implements (test/peers/tlsfuzzer-psk-conversations.py's SERVER_GROUPS), default order first. */
const ALL_GROUPS = 'X25519MLKEM768,x25519,secp256r1,secp384r1,SecP256r1MLKEM768,SecP384r1MLKEM1024,ffdhe2048,ffdhe3072,ffdhe4096,ffdhe6144,ffdhe8192';

const PSK_SHA256 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const PSK_SHA384 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f';
const IDENTITY = 'client1';

// Both runs, one after the other, within tap's per-file timeout (300 s in package.json): told to the runner.
t.setTimeout(2 * (SCRIPT_MS + 30_000) + 30_000);

const skip = missingPython(t, 'tlsfuzzer', VENDOR ? [join(VENDOR, 'tlsfuzzer'), join(VENDOR, 'tlslite-ng')] : undefined, ['ecdsa', 'tlsfuzzer', 'tlslite']);

for (const hash of ['SHA-256', 'SHA-384'] as const) {
  t.test(`tlsfuzzer conversations ported to a ${hash} PSK`, { timeout: SCRIPT_MS + 30_000, skip }, async (tt) => {
    const psk = hash === 'SHA-256' ? PSK_SHA256 : PSK_SHA384;
    const port = await startPskServer(tt, psk, IDENTITY, hash, ['--groups', ALL_GROUPS]);
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
    for (const family of ['zero-length-data', 'record-padding', 'keyupdate', 'record-layer-limits', 'ccs', 'multiple-ccs-messages', 'empty-alert', 'legacy-version', 'version-negotiation', 'invalid-ciphers', 'nociphers', 'hrr', 'unrecognised-groups', 'large-number-of-extensions', 'finished', 'zero-content-type', 'finished-plaintext', 'unencrypted-alert', 'symetric-ciphers', 'lengths', 'keyshare-omitted', 'shuffled-extentions', 'connection-abort', 'serverhello-random', 'obsolete-curves', 'ecdhe-curves', 'crfg-curves', 'ffdhe-groups', 'ffdhe-sanity', 'dhe-shared-secret-padding', 'no-unknown-groups', 'mlkem', '0rtt-garbage', 'invalid-server-name-extension']) {
      tt.ok(run.output.includes(`\n${family}: `), `conversations from test-${family === 'invalid-server-name-extension' ? '' : 'tls13-'}${family} ran`);
    }
    tt.ok(run.output.includes('\nframing (PSK port): '), 'the framing conversations modelled on them ran');
    // The padding hunts ran to both of their ends in each group (DhPaddingHunt prints one such line a group).
    for (const group of ['secp256r1', 'secp384r1', 'x25519', 'ffdhe2048', 'ffdhe3072']) {
      tt.match(run.output, new RegExp(`\\n${group}: \\d+ handshakes, \\d+ of them completed; a shared secret and a server share with a leading zero byte each completed\\n`), `leading-zero shared secret and share in ${group}`);
    }
    tt.equal(run.code, 0, 'the script exits 0');
  });
}
