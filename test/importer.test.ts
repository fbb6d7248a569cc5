/**
 * The RFC 9258 importer against values from outside this project (shared/vectors/rfc9258-crosscheck.json):
 * ImportedIdentity bytes from GnuTLS and TlsLib4Pascal, ipskx from Botan, and the binders of real BoringSSL
 * ClientHellos, recomputed here from their truncated ClientHello and checked by our server state machine.
 * Then full imported-PSK handshakes through the sans-IO connections, for each target KDF (including a SHA-256
 * EPSK imported for a SHA-384 suite), imported and plain PSKs side by side, and the identities a server ignores.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { fromHex, toHex, utf8 } from '../lib/codec/bytes.js';
import { ContentType, HandshakeType } from '../lib/codec/enums.js';
import type { ClientOptions, ServerOptions } from '../lib/config/options.js';
import { Connection } from '../lib/connection/connection.js';
import type { ConnectionEvent, HandshakeInfo } from '../lib/config/events.js';
import { nobleProvider } from '../lib/crypto/noble.js';
import { nodeProvider } from '../lib/crypto/node.js';
import type { CryptoProvider, HashName } from '../lib/crypto/provider.js';
import { expandLabel, hkdfLabel } from '../lib/keyschedule/hkdf-label.js';
import { Label } from '../lib/keyschedule/labels.js';
import { EarlySecret, finishedKey, finishedVerifyData } from '../lib/keyschedule/schedule.js';
import { decodeClientHello } from '../lib/messages/hello.js';
import {
  acceptImportedIdentities,
  decodeImportedIdentity,
  deriveImportedPsk,
  encodeImportedIdentity,
  importedResolver,
  importPsk,
  TargetKdf,
  TargetProtocol,
  targetKdfsForHashes,
  type ExternalPsk,
} from '../lib/psk/importer.js';
import type { Psk } from '../lib/psk/types.js';
import { encodePlaintextRecord } from '../lib/record/deframer.js';
import type { SupportedSuiteName } from '../lib/suites.js';

interface CrossCheckVector {
  name: string;
  inputs: {
    epsk_hex: string;
    epsk_hash: HashName;
    external_identity_hex: string;
    context_hex: string;
    target_protocol: string;
    target_kdf: string;
    target_hash: HashName;
    L: number;
  };
  outputs: Record<string, string>;
  third_party_expected: Record<string, string>;
}
interface Capture {
  name: string;
  epsk_hex: string;
  epsk_hash: HashName;
  external_identity_hex: string;
  context_hex: string;
  negotiated_cipher: SupportedSuiteName;
  client_hello_hex: string;
  truncated_client_hello_hex: string;
  offered_psks: {
    target_hash: HashName;
    wire_identity_hex: string;
    wire_binder_hex: string;
    expected_ipskx_hex: string;
    expected_binder_key_hex: string;
    expected_binder_hex: string;
  }[];
}

// A copy of shared/vectors/rfc9258-crosscheck.json kept in the repository (vectors/), read from dist/test/.
const data = JSON.parse(readFileSync(new URL('../../vectors/rfc9258-crosscheck.json', import.meta.url), 'utf8')) as {
  vectors: CrossCheckVector[];
  handshake_captures: Capture[];
};
const providers: CryptoProvider[] = [nobleProvider, nodeProvider];

t.test('cross-check vectors: ImportedIdentity, ipskx and the imported binder key', async (t) => {
  t.ok(data.vectors.length >= 8, 'the cross-check file has its vectors');
  for (const crypto of providers) {
    for (const v of data.vectors) {
      const i = v.inputs;
      const o = v.outputs;
      const name = `${v.name} (${crypto.name})`;
      const targetKdf = Number(i.target_kdf);
      const identity = encodeImportedIdentity({
        externalIdentity: fromHex(i.external_identity_hex),
        context: fromHex(i.context_hex),
        targetProtocol: Number(i.target_protocol),
        targetKdf,
      });
      t.equal(toHex(identity), o.imported_identity_hex, `${name}: ImportedIdentity`);
      if (v.third_party_expected.imported_identity_hex) {
        t.equal(toHex(identity), v.third_party_expected.imported_identity_hex, `${name}: ImportedIdentity as the third party encodes it`);
      }
      // The derivation's pieces (RFC 9258 §5.1, with the EPSK's hash).
      t.equal(toHex(crypto.hash(i.epsk_hash).digest(identity)), o.imported_identity_hash_hex, `${name}: Hash(ImportedIdentity)`);
      const epskx = crypto.hkdfExtract(i.epsk_hash, new Uint8Array(crypto.hash(i.epsk_hash).outputLength), fromHex(i.epsk_hex));
      t.equal(toHex(epskx), o.epskx_hex, `${name}: epskx`);
      t.equal(toHex(hkdfLabel(Label.derivedPsk, fromHex(o.imported_identity_hash_hex), i.L)), o.derived_psk_hkdf_label_hex, `${name}: HkdfLabel`);

      const ipskx = deriveImportedPsk(crypto, { secret: fromHex(i.epsk_hex), hash: i.epsk_hash }, identity, i.target_hash);
      t.equal(ipskx.length, i.L, `${name}: L`);
      t.equal(toHex(ipskx), o.ipskx_hex, `${name}: ipskx`);
      if (v.third_party_expected.ipskx_hex) t.equal(toHex(ipskx), v.third_party_expected.ipskx_hex, `${name}: ipskx as Botan computes it`);

      // importPsk gives the same, as a PSK bound to the target hash with the "imp binder" label.
      const kdfName = targetKdf === TargetKdf.HKDF_SHA256 ? 'HKDF_SHA256' : 'HKDF_SHA384';
      const epsk: ExternalPsk = { identity: fromHex(i.external_identity_hex), secret: fromHex(i.epsk_hex), hash: i.epsk_hash };
      // Some cross-check vectors have EPSKs under 128 bits (4 bytes): RFC 9257 §6 forbids them as keys, but the
      // derivation is what these vectors check.
      const [psk] = importPsk(crypto, epsk, { context: fromHex(i.context_hex), targetKdfs: [kdfName], dangerouslyAllowShortPsks: true });
      t.equal(toHex(psk.identity), o.imported_identity_hex, `${name}: importPsk identity`);
      t.equal(toHex(psk.secret), o.ipskx_hex, `${name}: importPsk secret`);
      t.equal(psk.hash, i.target_hash, `${name}: importPsk hash is the target's`);
      t.equal(psk.binderKind, 'imported', `${name}: importPsk binder kind`);

      const es = EarlySecret.fromPsk(crypto, i.target_hash, ipskx);
      t.equal(toHex(es.dangerousSecret()), o.early_secret_hex, `${name}: early secret`);
      const binderKey = es.binderKey('imported');
      t.equal(toHex(binderKey), o.binder_key_hex, `${name}: binder_key with "imp binder"`);
      t.equal(toHex(finishedKey(crypto, i.target_hash, binderKey)), o.binder_finished_key_hex, `${name}: binder finished_key`);
      const extKey = es.binderKey('external');
      t.equal(toHex(extKey), o.ext_binder_key_NOT_for_imported_hex, `${name}: the "ext binder" key differs`);
      t.not(toHex(extKey), toHex(binderKey), `${name}: an imported PSK never yields the ext binder key`);
    }
  }
});

t.test('§5.1: the EPSK hash drives the derivation, not the target KDF', async (t) => {
  const crypto = nobleProvider;
  const v = data.vectors.find((x) => x.inputs.epsk_hash === 'SHA-256' && x.inputs.target_hash === 'SHA-384')!;
  const identity = fromHex(v.outputs.imported_identity_hex);
  const right = deriveImportedPsk(crypto, { secret: fromHex(v.inputs.epsk_hex), hash: 'SHA-256' }, identity, 'SHA-384');
  t.equal(toHex(right), v.outputs.ipskx_hex);
  // What GnuTLS does (the target hash throughout) gives another key: the two would not interoperate.
  const wrong = deriveImportedPsk(crypto, { secret: fromHex(v.inputs.epsk_hex), hash: 'SHA-384' }, identity, 'SHA-384');
  t.not(toHex(wrong), v.outputs.ipskx_hex);
  // An EPSK without a hash is taken as SHA-256 (RFC 9258 §5.1 "SHA-256 SHOULD be used").
  const dflt = deriveImportedPsk(crypto, { secret: fromHex(v.inputs.epsk_hex) }, identity, 'SHA-384');
  t.equal(toHex(dflt), v.outputs.ipskx_hex);
});

t.test('BoringSSL ClientHellos: identities, ipskx and binders recomputed from the truncated ClientHello', async (t) => {
  t.equal(data.handshake_captures.length, 2);
  for (const crypto of providers) {
    for (const cap of data.handshake_captures) {
      const name = `${cap.name} (${crypto.name})`;
      const ch = decodeClientHello(fromHex(cap.client_hello_hex));
      t.equal(toHex(ch.raw.subarray(0, ch.truncatedLength)), cap.truncated_client_hello_hex, `${name}: truncated ClientHello`);
      const epsk: ExternalPsk = { identity: fromHex(cap.external_identity_hex), secret: fromHex(cap.epsk_hex), hash: cap.epsk_hash };
      const ours = importPsk(crypto, epsk, { context: fromHex(cap.context_hex) });
      t.equal(ch.psks!.identities.length, cap.offered_psks.length, `${name}: identities offered`);
      cap.offered_psks.forEach((o, k) => {
        const wire = ch.psks!.identities[k].identity;
        t.equal(toHex(wire), o.wire_identity_hex, `${name}: wire identity #${k}`);
        t.equal(toHex(ch.psks!.binders[k]), o.wire_binder_hex, `${name}: wire binder #${k}`);
        t.equal(toHex(ours[k].identity), o.wire_identity_hex, `${name}: our ImportedIdentity #${k}`);
        t.equal(ours[k].hash, o.target_hash, `${name}: target hash #${k}`);
        t.equal(toHex(ours[k].secret), o.expected_ipskx_hex, `${name}: ipskx #${k}`);
        const es = EarlySecret.fromPsk(crypto, o.target_hash, ours[k].secret);
        const bk = es.binderKey('imported');
        t.equal(toHex(bk), o.expected_binder_key_hex, `${name}: binder key #${k}`);
        const truncatedHash = crypto.hash(o.target_hash).digest(ch.raw.subarray(0, ch.truncatedLength));
        const binder = finishedVerifyData(crypto, o.target_hash, bk, truncatedHash);
        t.equal(toHex(binder), o.wire_binder_hex, `${name}: BoringSSL's binder #${k} recomputed`);
      });
    }
  }
});

t.test("our server state machine verifies BoringSSL's imported binders and picks the identity for its suite", async (t) => {
  for (const cap of data.handshake_captures) {
    const epsk: ExternalPsk = { identity: fromHex(cap.external_identity_hex), secret: fromHex(cap.epsk_hex), hash: cap.epsk_hash };
    for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'] as const) {
      const server = Connection.server({ crypto: nodeProvider, suites: [suite], psks: importedResolver(nodeProvider, [epsk]) });
      server.receive(encodePlaintextRecord(ContentType.handshake, fromHex(cap.client_hello_hex)));
      const events = server.takeEvents();
      t.notOk(events.some((e) => e.type === 'error'), `${cap.name} / ${suite}: no error (${JSON.stringify(events.map((e) => e.type))})`);
      const out = server.takeOutput()!;
      t.ok(out && out[0] === ContentType.handshake && out[5] === HandshakeType.server_hello, `${cap.name} / ${suite}: a ServerHello`);
      // ServerHello: pre_shared_key selected_identity is 0 for the SHA-256 identity, 1 for the SHA-384 one.
      const selected = selectedIdentity(out.subarray(5));
      t.equal(selected, suite === 'TLS_AES_128_GCM_SHA256' ? 0 : 1, `${cap.name} / ${suite}: selected identity`);
      server.destroy();
    }
  }
});

t.test('ImportedIdentity decoding and what the server accepts', async (t) => {
  const ext = utf8('key-1');
  const good = encodeImportedIdentity({ externalIdentity: ext, context: utf8('ctx'), targetProtocol: 0x0304, targetKdf: 2 });
  const d = decodeImportedIdentity(good)!;
  t.same([toHex(d.externalIdentity), toHex(d.context), d.targetProtocol, d.targetKdf], [toHex(ext), toHex(utf8('ctx')), 0x0304, 2]);
  t.equal(decodeImportedIdentity(utf8('client1')), undefined, 'a plain identity is not an ImportedIdentity');
  t.equal(decodeImportedIdentity(good.subarray(0, good.length - 1)), undefined, 'truncated');
  t.equal(decodeImportedIdentity(fromHex('0000000003040001')), undefined, 'empty external_identity');
  t.throws(() => encodeImportedIdentity({ externalIdentity: new Uint8Array(0), context: new Uint8Array(0), targetProtocol: 0x0304, targetKdf: 1 }), RangeError);
  t.throws(
    () => encodeImportedIdentity({ externalIdentity: new Uint8Array(0xfff0), context: new Uint8Array(0x20), targetProtocol: 0x0304, targetKdf: 1 }),
    /do not fit/,
    'an ImportedIdentity longer than a PSK identity is rejected (§5.1)',
  );

  const mk = (targetProtocol: number, targetKdf: number, context = 'ctx') =>
    encodeImportedIdentity({ externalIdentity: ext, context: utf8(context), targetProtocol, targetKdf });
  const ids = [
    utf8('plain'),
    mk(TargetProtocol.DTLS13, 1),
    mk(0x0304, 0x0003),
    mk(0x0304, 1, 'other'),
    mk(0x0304, 1),
    mk(0x0304, 2),
  ];
  const { accepted, externalIdentities } = acceptImportedIdentities(ids, { context: 'ctx' });
  t.same(
    accepted.map((a) => [a.index, a.targetKdf]),
    [
      [4, 'HKDF_SHA256'],
      [5, 'HKDF_SHA384'],
    ],
    'only TLS 1.3, known KDFs and the expected context are accepted',
  );
  t.equal(externalIdentities.length, 1, 'two identities naming one EPSK: one lookup');
  t.same(
    acceptImportedIdentities(ids, { context: 'ctx', targetKdfs: ['HKDF_SHA384'] }).accepted.map((a) => a.index),
    [5],
    'a server that no longer accepts a KDF ignores its identities (§6)',
  );
  t.same(targetKdfsForHashes(['SHA-256', 'SHA-256', 'SHA-384']), ['HKDF_SHA256', 'HKDF_SHA384']);
});

// ---- full handshakes ------------------------------------------------------------------------------------------

interface Outcome {
  client?: HandshakeInfo;
  server?: HandshakeInfo;
  clientError?: ConnectionEvent & { type: 'error' };
  serverError?: ConnectionEvent & { type: 'error' };
  echoed: string;
}

/** Runs a client and a server back to back in memory; the client sends `hello`, the server echoes it. */
function handshake(clientOptions: ClientOptions, serverOptions: ServerOptions): Outcome {
  const client = Connection.client(clientOptions);
  const server = Connection.server(serverOptions);
  const r: Outcome = { echoed: '' };
  client.write(utf8('hello'));
  for (let round = 0; round < 32; round++) {
    let moved = false;
    const c = client.takeOutput();
    if (c) (server.receive(c), (moved = true));
    for (const e of server.takeEvents()) {
      if (e.type === 'handshake') r.server = e.info;
      if (e.type === 'error') r.serverError = e;
      if (e.type === 'data') server.write(e.data);
    }
    const s = server.takeOutput();
    if (s) (client.receive(s), (moved = true));
    for (const e of client.takeEvents()) {
      if (e.type === 'handshake') r.client = e.info;
      if (e.type === 'error') r.clientError = e;
      if (e.type === 'data') r.echoed += Buffer.from(e.data).toString();
    }
    if (!moved && !client.hasOutput && !server.hasOutput) break;
  }
  return r;
}

const qkdKey = (fill: number, len = 32) => new Uint8Array(len).fill(fill);

t.test('imported-PSK handshakes for each target KDF, each EPSK hash', async (t) => {
  const cases: { epskHash: HashName; suite: SupportedSuiteName; kdfIndex: number }[] = [
    { epskHash: 'SHA-256', suite: 'TLS_AES_128_GCM_SHA256', kdfIndex: 0 },
    { epskHash: 'SHA-256', suite: 'TLS_CHACHA20_POLY1305_SHA256', kdfIndex: 0 },
    { epskHash: 'SHA-256', suite: 'TLS_AES_256_GCM_SHA384', kdfIndex: 1 }, // a SHA-256 EPSK for a SHA-384 suite
    { epskHash: 'SHA-384', suite: 'TLS_AES_256_GCM_SHA384', kdfIndex: 1 },
    { epskHash: 'SHA-384', suite: 'TLS_AES_128_GCM_SHA256', kdfIndex: 0 },
  ];
  for (const crypto of providers) {
    for (const c of cases) {
      const epsk: ExternalPsk = { identity: utf8('550e8400-e29b-41d4-a716-446655440000'), secret: qkdKey(7, 32), hash: c.epskHash, label: 'k1' };
      const psks = importPsk(crypto, epsk, { context: 'qkd-tls test' });
      t.equal(psks.length, 2);
      const r = handshake(
        { crypto, psks },
        { crypto, suites: [c.suite], psks: importedResolver(crypto, [epsk], { context: 'qkd-tls test' }) },
      );
      const name = `${c.epskHash} EPSK, ${c.suite} (${crypto.name})`;
      t.notOk(r.clientError ?? r.serverError, `${name}: no error`);
      t.equal(r.client?.suite, c.suite, `${name}: suite`);
      t.equal(r.server?.identityIndex, c.kdfIndex, `${name}: the server picked the identity for the suite's hash`);
      t.equal(r.client?.identityIndex, c.kdfIndex, `${name}: the client agrees`);
      t.equal(r.server?.pskLabel, 'k1', `${name}: the label follows the EPSK`);
      t.equal(r.echoed, 'hello', `${name}: data flows`);
    }
  }
});

t.test('a lookup that finds the EPSK under another spelling: ipskx is derived from the ImportedIdentity received (§5.1)', async (t) => {
  // importedResolver's lookup function maps a received external identity to an EPSK; one that matches key IDs (UUIDs)
  // case-insensitively answered an EPSK whose identity is spelt otherwise, and the server derived ipskx under
  // Hash(ImportedIdentity) re-encoded with that spelling: another key, a binder that never verified (decrypt_error).
  const crypto = nodeProvider;
  const secret = qkdKey(11);
  const sent = '550E8400-E29B-41D4-A716-446655440000';
  const stored: ExternalPsk = { identity: utf8(sent.toLowerCase()), secret, label: 'stored' };
  const lookup = (id: Uint8Array): ExternalPsk | undefined => (new TextDecoder().decode(id).toLowerCase() === sent.toLowerCase() ? stored : undefined);
  const r = handshake({ crypto, psks: importPsk(crypto, { identity: utf8(sent), secret }) }, { crypto, psks: importedResolver(crypto, lookup) });
  t.notOk(r.clientError ?? r.serverError, 'no error');
  t.equal(r.server?.identity, `${sent} (imported for HKDF_SHA256)`, 'the identity is the one received');
  t.equal(r.echoed, 'hello', 'data flows');
});

t.test('imported and plain external PSKs side by side', async (t) => {
  const crypto = nodeProvider;
  const epsk: ExternalPsk = { identity: utf8('qkd-key'), secret: qkdKey(1) };
  const plain: Psk = { identity: utf8('legacy'), secret: qkdKey(2), hash: 'SHA-256' };
  const clientPsks = [plain, ...importPsk(crypto, epsk)];

  // A server that knows both: the first usable in the client's order (the plain one) wins.
  let r = handshake({ crypto, psks: clientPsks }, { crypto, psks: importedResolver(crypto, [epsk], { plain: [plain] }) });
  t.equal(r.server?.identity, 'legacy', 'both known: the first one offered');
  // A server that only imports: the plain identity is ignored, the imported one used.
  r = handshake({ crypto, psks: clientPsks }, { crypto, psks: importedResolver(crypto, [epsk]) });
  t.equal(r.server?.identityIndex, 1, 'importer only: the imported SHA-256 identity');
  // A server that only knows plain PSKs: the imported identities are unknown to it.
  r = handshake({ crypto, psks: clientPsks }, { crypto, psks: [plain] });
  t.equal(r.server?.identity, 'legacy', 'plain only: the plain identity');
  // The same key listed both as an EPSK to import and as a plain PSK: it is only ever imported (RFC 9258 §4).
  const direct: Psk = { identity: epsk.identity, secret: epsk.secret, hash: 'SHA-256' };
  r = handshake({ crypto, psks: [direct] }, { crypto, psks: importedResolver(crypto, [epsk], { plain: [direct, plain] }) });
  t.equal(r.serverError?.error.alert, 'unknown_psk_identity', 'an imported key offered directly is not accepted');
});

t.test('imported and non-imported uses of a key never meet (§5.2), nor do different contexts', async (t) => {
  const crypto = nodeProvider;
  const epsk: ExternalPsk = { identity: utf8('k'), secret: qkdKey(9) };
  // The client imports; the server has the same bytes as a plain PSK under the ImportedIdentity's name.
  const [imported] = importPsk(crypto, epsk, { targetKdfs: ['HKDF_SHA256'] });
  const impostor: Psk = { identity: imported.identity, secret: imported.secret, hash: 'SHA-256' };
  let r = handshake({ crypto, psks: [imported] }, { crypto, psks: [impostor] });
  t.equal(r.serverError?.error.alert, 'decrypt_error', '"imp binder" vs "ext binder": the binder does not verify');
  // Different contexts: the server does not accept the identity.
  r = handshake({ crypto, psks: importPsk(crypto, epsk, { context: 'a' }) }, { crypto, psks: importedResolver(crypto, [epsk], { context: 'b' }) });
  t.equal(r.serverError?.error.alert, 'unknown_psk_identity', 'another context: unknown identity');
  // A client importing for SHA-384 only, a server accepting SHA-256 only.
  r = handshake(
    { crypto, psks: importPsk(crypto, epsk, { targetKdfs: ['HKDF_SHA384'] }) },
    { crypto, psks: importedResolver(crypto, [epsk], { targetKdfs: ['HKDF_SHA256'] }) },
  );
  t.equal(r.serverError?.error.alert, 'unknown_psk_identity', 'another KDF: ignored');
});

t.test('the HKDF label is written once (Label.derivedPsk, "tls13 derived psk")', async (t) => {
  t.equal(Label.derivedPsk, 'derived psk');
  const crypto = nobleProvider;
  const ipskx = deriveImportedPsk(crypto, { secret: qkdKey(3) }, utf8('x'), 'SHA-256');
  const epskx = crypto.hkdfExtract('SHA-256', new Uint8Array(32), qkdKey(3));
  t.equal(toHex(ipskx), toHex(expandLabel(crypto, 'SHA-256', epskx, Label.derivedPsk, crypto.hash('SHA-256').digest(utf8('x')), 32)));
});

/** selected_identity from a ServerHello handshake message (type, length, then the body). */
function selectedIdentity(msg: Uint8Array): number {
  let p = 4 + 2 + 32;
  p += 1 + msg[p]; // session id
  p += 2 + 1; // cipher suite, compression
  const end = p + 2 + ((msg[p] << 8) | msg[p + 1]);
  p += 2;
  while (p < end) {
    const type = (msg[p] << 8) | msg[p + 1];
    const len = (msg[p + 2] << 8) | msg[p + 3];
    if (type === 41) return (msg[p + 4] << 8) | msg[p + 5];
    p += 4 + len;
  }
  return -1;
}

t.test('identityText shows an imported identity by its external identity and target KDF', async (t) => {
  const { identityText } = await import('../lib/psk/identity-text.js');
  const { encodeImportedIdentity, TargetKdf, TargetProtocol } = await import('../lib/psk/importer.js');
  const { utf8 } = await import('../lib/codec/bytes.js');
  const id = encodeImportedIdentity({
    externalIdentity: utf8('client-sae/0f3c'),
    context: new Uint8Array(0),
    targetProtocol: TargetProtocol.TLS13,
    targetKdf: TargetKdf.HKDF_SHA384,
  });
  t.equal(identityText(id), 'client-sae/0f3c (imported for HKDF_SHA384)');
  t.equal(identityText(utf8('alice')), 'alice');
  t.equal(identityText(new Uint8Array([0, 1, 0xff])), '0001ff');
});
