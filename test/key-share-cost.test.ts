/**
 * A hostile ClientHello's key_share and supported_groups cost the server work in proportion to their size, not to
 * its square. One ClientHello's extensions (up to 2^16-1 bytes) hold some 13,000 one-byte key shares, or a few
 * thousand shares and tens of thousands of groups; the duplicate check (RFC 8446 §4.2.8) compared each share with
 * every one before it, and the supported_groups check (§4.2.8, §9.2) searched the whole group list per share:
 * ~0.15 s and ~0.3 s of CPU per such ClientHello, spent before any PSK binder is checked, by anyone.
 *
 * The same for the PSK identities of a second ClientHello (RFC 8446 §4.1.2: only those of the first may come
 * again), each of which was searched for in the first ClientHello's list: ~70 ms for 1,400 identities.
 *
 * Without timing anything, the work is counted: every search of an array (some, includes, find, ...) made while the
 * server reads the ClientHello adds the length of the array it searched.
 */
import t from 'tap';
import { ContentType, ExtensionType, NamedGroup } from '../lib/codec/enums.js';
import { Writer } from '../lib/codec/writer.js';
import { Connection } from '../lib/connection/connection.js';
import { createNobleProvider } from '../lib/crypto/noble.js';
import { errorsOf, firstHandshakeMessage, joinHello, makePsk, plainRecord, splitHello, splitRecords } from './helpers/pair.js';
import type { Reason } from '../lib/errors.js';
import { decodeClientHello } from '../lib/messages/hello.js';

const SEARCHES = ['some', 'every', 'find', 'findIndex', 'findLast', 'findLastIndex', 'includes', 'indexOf', 'lastIndexOf', 'filter'] as const;

/** Runs `f`, counting the array elements that array searches could visit meanwhile (the sum of their lengths). */
function countSearched(f: () => void): number {
  const proto = Array.prototype as unknown as Record<string, (this: unknown[], ...args: unknown[]) => unknown>;
  const saved = SEARCHES.map((m) => proto[m]);
  let searched = 0;
  SEARCHES.forEach((m, i) => {
    const original = saved[i];
    proto[m] = function (this: unknown[], ...args: unknown[]) {
      searched += this.length;
      return original.apply(this, args);
    };
  });
  try {
    f();
  } finally {
    SEARCHES.forEach((m, i) => (proto[m] = saved[i]));
  }
  return searched;
}

/** A real ClientHello whose key_share holds `shares` one-byte shares and whose supported_groups lists `extraGroups` more groups first. */
function hostileClientHello(shares: number, extraGroups: number, duplicateLast = false): Uint8Array {
  const psk = makePsk('key-share-cost');
  const client = Connection.client({ crypto: createNobleProvider(), psks: [psk] });
  const parts = splitHello(firstHandshakeMessage(splitRecords(client.takeOutput()!)));
  const x25519 = decodeClientHello(joinHello(parts)).keyShares![0];
  const group = (i: number) => (duplicateLast && i === shares - 1 ? 0x1000 : 0x1000 + i);
  // The client's own x25519 share last: the server searches the whole list for it.
  const keyShare = new Writer(shares * 5 + 40)
    .vec16((l) => {
      for (let i = 0; i < shares; i++) l.u16(group(i)).vec16(Uint8Array.of(7));
      l.u16(NamedGroup.x25519).vec16(x25519.keyExchange);
    })
    .finish();
  const groups = new Writer((shares + extraGroups) * 2 + 4)
    .vec16((l) => {
      for (let i = 0; i < extraGroups; i++) l.u16(0x8000 + i);
      for (let i = 0; i < shares; i++) l.u16(0x1000 + i);
      l.u16(NamedGroup.x25519);
    })
    .finish();
  const extensions = parts.extensions.map((e) =>
    e.type === ExtensionType.key_share ? { type: e.type, data: keyShare } : e.type === ExtensionType.supported_groups ? { type: e.type, data: groups } : e,
  );
  return joinHello({ ...parts, extensions });
}

/** The ClientHello in records of at most 2^14 bytes. */
function inRecords(message: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < message.length; at += 16384) out.push(plainRecord(ContentType.handshake, message.subarray(at, at + 16384)));
  return out;
}

t.test('thousands of key shares and groups in one ClientHello: the server searches in proportion to their number', async (tt) => {
  const cases: { shares: number; extraGroups: number; duplicateLast?: boolean; reason: Reason; what: string }[] = [
    { shares: 8800, extraGroups: 0, reason: 'IncorrectBinder', what: '8,800 distinct shares' },
    { shares: 6000, extraGroups: 10000, reason: 'IncorrectBinder', what: '6,000 shares after 10,000 other groups' },
    { shares: 8800, extraGroups: 0, duplicateLast: true, reason: 'KeyShareDuplicateGroup', what: '8,800 shares, the last one a duplicate' },
  ];
  for (const c of cases) {
    const hello = hostileClientHello(c.shares, c.extraGroups, c.duplicateLast);
    tt.ok(hello.length > 60_000 && hello.length < 65_536 + 1024, `${c.what}: a ClientHello of ${hello.length} bytes`);
    // One server group, so that the server's own preference list adds nothing to the count.
    const server = Connection.server({ crypto: createNobleProvider(), psks: [makePsk('key-share-cost')], groups: ['x25519'] });
    const records = inRecords(hello);
    const searched = countSearched(() => {
      for (const r of records) server.receive(r);
    });
    const entries = c.shares + c.extraGroups;
    // Before: ~n^2/2 for the duplicates (38.7 million for 8,800 shares) plus ~n * (m + n/2) for supported_groups.
    tt.ok(searched <= 8 * entries, `${c.what}: ${searched} array elements searched, at most 8 per entry (${8 * entries})`);
    const errors = errorsOf(server.takeEvents());
    tt.equal(errors[0]?.reason, c.reason, `${c.what}: the ClientHello still fails where it should (${c.reason})`);
  }
});

t.test('a second ClientHello with 1,400 PSK identities: the server searches in proportion to their number', async (tt) => {
  const crypto = createNobleProvider();
  const known = makePsk('known');
  // Identities the server does not know (keys are looked up for the first 16 only), with a binder each.
  const unknown = Array.from({ length: 1400 }, (_, i) => makePsk(`u${String(i).padStart(5, '0')}`));
  const client = Connection.client({ crypto, psks: [known, ...unknown], middleboxCompatibility: false });
  // secp256r1 only: the client's x25519 share gets a HelloRetryRequest.
  const server = Connection.server({ crypto, psks: [known], groups: ['secp256r1'] });
  server.receive(client.takeOutput()!);
  tt.equal(server.stateName, 'ExpectSecondClientHello', 'the server asked for another key share');
  client.receive(server.takeOutput()!);
  const second = client.takeOutput()!;
  tt.ok(second.length > 60_000, `a second ClientHello of ${second.length} bytes`);
  const searched = countSearched(() => server.receive(second));
  // Before: the first ClientHello's identities searched once per identity of the second, ~1,400^2/2 = 980,000.
  tt.ok(searched <= 8 * 1401, `${searched} array elements searched, at most 8 per identity (${8 * 1401})`);
  tt.same(errorsOf(server.takeEvents()), [], 'the second ClientHello is accepted');
  tt.equal(server.stateName, 'ExpectClientFinished', 'and answered');
});
