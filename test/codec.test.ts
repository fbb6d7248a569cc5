/**
 * The presentation-language codec (RFC 8446 §3): Writer with back-patched length prefixes, Reader with nested
 * scopes that must be consumed exactly, and the rule that a malformed input ends in a decode_error TlsError and
 * in nothing else. Also the byte helpers and nameOf.
 */
import t from 'tap';
import fc from 'fast-check';
import { concat, equalConstantTime, fromHex, toHex, utf8, fromUtf8, wipe } from '../lib/codec/bytes.js';
import { AlertDescription, alertName, ContentType, ExtensionType, HandshakeType, NamedGroup, nameOf } from '../lib/codec/enums.js';
import { Reader } from '../lib/codec/reader.js';
import { Writer } from '../lib/codec/writer.js';
import { TlsError, type Reason } from '../lib/errors.js';

type Tap = Pick<typeof t, 'ok' | 'equal' | 'fail'>;

/** Asserts that `fn` throws a decode_error TlsError with `reason`, and no other kind of exception. */
function decodeError(tt: Tap, fn: () => unknown, reason: Reason, msg: string): void {
  try {
    fn();
    tt.fail(`${msg}: nothing was thrown`);
  } catch (e) {
    if (!(e instanceof TlsError)) return void tt.fail(`${msg}: threw ${String(e)}, not a TlsError`);
    tt.equal(e.reason, reason, `${msg}: reason`);
    tt.equal(e.alert, 'decode_error', `${msg}: alert`);
    tt.equal(e.alertCode, AlertDescription.decode_error, `${msg}: alert code 50`);
  }
}

t.test('Writer: integers big-endian, vectors with back-patched lengths', async (t) => {
  const w = new Writer(1); // grows from one byte
  w.u8(0x1ff).u16(0x0203).u24(0x040506).u32(0xfffffffe);
  w.vec8(new Uint8Array([0xaa]));
  w.vec16((b) => b.u8(1).u8(2));
  w.vec24(new Uint8Array(0));
  t.equal(toHex(w.finish()), 'ff' + '0203' + '040506' + 'fffffffe' + '01aa' + '00020102' + '000000');
  t.equal(w.length, 19);
  const a = w.finish();
  a[0] = 0;
  t.equal(w.finish()[0], 0xff, 'finish returns a copy');
  const exact = new Writer(2).u16(0x0102);
  const e = exact.finish();
  e[0] = 9;
  t.equal(toHex(exact.finish()), '0102', 'finish returns a copy when the writer is exactly full too');
  t.equal(toHex(new Writer(0).u8(7).u16(0x0809).finish()), '070809', 'a writer made with capacity 0 grows');
});

t.test('Writer: nested vectors, each length patched at its own width', async (t) => {
  const w = new Writer(4);
  w.vec24((outer) => {
    outer.vec16((mid) => {
      mid.vec8((inner) => inner.bytes(utf8('abc')));
      mid.u16(0x1234);
    });
    outer.u8(9);
  });
  // 000009 | 0006 | 03 616263 | 1234 | 09
  t.equal(toHex(w.finish()), '000009' + '0006' + '03616263' + '1234' + '09');
});

t.test('Writer: a body longer than its length prefix allows is refused', async (t) => {
  t.throws(() => new Writer().vec8(new Uint8Array(256)), RangeError);
  t.doesNotThrow(() => new Writer().vec8(new Uint8Array(255)));
  t.throws(() => new Writer().vec16(new Uint8Array(0x10000)), RangeError);
  const big = new Writer().vec24(new Uint8Array(0x10000)).finish();
  t.equal(big.length, 3 + 0x10000, 'vec24 holds more than 2^16 bytes');
  t.equal(toHex(big.subarray(0, 3)), '010000');
});

t.test('Reader: reads what the Writer wrote, 24-bit lengths included', async (t) => {
  const body = Uint8Array.from({ length: 70000 }, (_, i) => i & 0xff);
  const bytes = new Writer().u8(7).u16(0xbeef).u24(0xffffff).u32(0xffffffff).vec24(body).vec8(utf8('xy')).finish();
  const r = new Reader(bytes);
  t.equal(r.u8(), 7);
  t.equal(r.u16(), 0xbeef);
  t.equal(r.u24(), 0xffffff, 'largest uint24');
  t.equal(r.u32(), 0xffffffff, 'uint32 is unsigned');
  t.equal(r.offset, 10);
  const v = r.vec24();
  t.equal(v.length, 70000, 'a 24-bit length beyond 2^16');
  t.equal(v[69999], 69999 & 0xff);
  t.equal(fromUtf8(r.vec8()), 'xy');
  t.ok(r.atEnd);
  t.equal(r.remaining, 0);
  t.doesNotThrow(() => r.expectEnd());
});

t.test('Reader: nested scopes, each consumed exactly', async (t) => {
  // A ClientHello-like shape: extensions<0..2^16-1> of { type u16, data<0..2^16-1> }, one holding a u8 list.
  const bytes = new Writer()
    .vec16((list) => {
      list.u16(43).vec16((d) => d.vec8((v) => v.u16(0x0304).u16(0x0303)));
      list.u16(0xff01).vec16(new Uint8Array([0]));
    })
    .finish();
  const r = new Reader(bytes);
  const seen: string[] = [];
  r.scope16('extensions', (list) =>
    list.each((e) => {
      const type = e.u16();
      e.scope16('extension data', (d) => {
        if (type === 43) d.scope8('versions', (v) => v.each((x) => void seen.push(x.u16().toString(16))), 2);
        else seen.push(`ext ${toHex(d.rest())}`);
      });
    }),
  );
  r.expectEnd();
  t.same(seen, ['304', '303', 'ext 00']);

  const windowed = new Reader(fromHex('ff 0102 ff'), 1, 3);
  t.equal(windowed.u16(), 0x0102, 'a reader over a window of a buffer');
  t.ok(windowed.atEnd);
  decodeError(t, () => windowed.u8(), 'DecodeTruncated', 'it does not read past its window');
});

t.test('Reader: a scope whose body leaves bytes over is decode_error', async (t) => {
  const bytes = fromHex('0003 010203');
  decodeError(t, () => new Reader(bytes).scope16('s', (s) => s.u16()), 'DecodeTrailingBytes', 'one byte left in the scope');
  decodeError(t, () => new Reader(fromHex('0102')).expectEnd(), 'DecodeTrailingBytes', 'expectEnd with bytes left');
  const r = new Reader(fromHex('01'));
  decodeError(t, () => r.expectEnd('thing'), 'DecodeTrailingBytes', 'named structure');
});

t.test('Reader: a scope cannot read past its own end, even when the outer buffer goes on', async (t) => {
  const bytes = fromHex('02 0102 0304'); // scope8 of 2 bytes, then 2 more bytes outside it
  let bodyRan = false;
  decodeError(
    t,
    () =>
      new Reader(bytes).scope8('short', (s) => {
        bodyRan = true;
        return s.u32();
      }),
    'DecodeTruncated',
    'reading 4 bytes from a 2-byte scope',
  );
  t.ok(bodyRan);
  let ran = false;
  decodeError(
    t,
    () =>
      new Reader(fromHex('0005 0102')).scope16('long', () => {
        ran = true;
      }),
    'DecodeTruncated',
    'a scope longer than the input',
  );
  t.notOk(ran, 'the body of a truncated scope never runs');
});

t.test('Reader: truncation at every width', async (t) => {
  decodeError(t, () => new Reader(new Uint8Array(0)).u8(), 'DecodeTruncated', 'u8 of nothing');
  decodeError(t, () => new Reader(fromHex('01')).u16(), 'DecodeTruncated', 'u16 of 1 byte');
  decodeError(t, () => new Reader(fromHex('0102')).u24(), 'DecodeTruncated', 'u24 of 2 bytes');
  decodeError(t, () => new Reader(fromHex('010203')).u32(), 'DecodeTruncated', 'u32 of 3 bytes');
  decodeError(t, () => new Reader(fromHex('0102')).bytes(3), 'DecodeTruncated', 'bytes(3) of 2');
  decodeError(t, () => new Reader(fromHex('05 01020304')).vec8(), 'DecodeTruncated', 'vec8 declaring 5 of 4');
  decodeError(t, () => new Reader(fromHex('0005 01020304')).vec16(), 'DecodeTruncated', 'vec16 declaring 5 of 4');
  decodeError(t, () => new Reader(fromHex('010000 00')).vec24(), 'DecodeTruncated', 'vec24 declaring 65536 of 1');
  decodeError(t, () => new Reader(fromHex('0000')).scope24('s', () => 0), 'DecodeTruncated', 'scope24 with a 2-byte length');
  const r = new Reader(fromHex('0102'));
  try {
    r.u24('legacy_version');
  } catch (e) {
    t.match((e as Error).message, /legacy_version: need 3 bytes, 2 left/, 'the message names the field');
  }
});

t.test('Reader: minimum lengths', async (t) => {
  decodeError(t, () => new Reader(fromHex('00')).vec8('v', 1), 'DecodeEmptyVector', 'an empty vector where one element is required');
  decodeError(t, () => new Reader(fromHex('0001 00')).vec16('v', 2), 'DecodeBadLength', 'shorter than its minimum');
  decodeError(t, () => new Reader(fromHex('000000')).vec24('v', 1), 'DecodeEmptyVector', 'vec24 empty');
  decodeError(t, () => new Reader(fromHex('00')).scope8('s', () => 0, 1), 'DecodeEmptyVector', 'scope8 empty');
  t.equal(new Reader(fromHex('0002 0a0b')).vec16('v', 2).length, 2, 'exactly the minimum is fine');
});

t.test('Reader: any input either parses or fails with decode_error, never another exception', async (t) => {
  const parse = (bytes: Uint8Array) => {
    const r = new Reader(bytes);
    r.u8();
    r.scope16('list', (l) =>
      l.each((e) => {
        e.u16();
        e.scope8('inner', (i) => i.each((x) => void x.u16()), 1);
        e.vec24();
      }),
    );
    r.vec8();
    r.expectEnd();
  };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        parse(bytes);
      } catch (e) {
        return e instanceof TlsError && e.alert === 'decode_error';
      }
      return true;
    }),
    { numRuns: 3000, seed: 8448 },
  );
  t.pass('3000 random inputs: only decode_error');
});

t.test('Writer then Reader round-trips any nested structure', async (t) => {
  const element = fc.record({ type: fc.integer({ min: 0, max: 0xffff }), data: fc.uint8Array({ maxLength: 300 }), tag: fc.uint8Array({ maxLength: 20 }) });
  fc.assert(
    fc.property(fc.array(element, { maxLength: 12 }), (list) => {
      const w = new Writer(2);
      w.vec24((o) => o.vec16((l) => list.forEach((e) => l.u16(e.type).vec16(e.data).vec8(e.tag))));
      const r = new Reader(w.finish());
      const back: typeof list = [];
      r.scope24('outer', (o) => o.scope16('list', (l) => l.each((e) => void back.push({ type: e.u16(), data: e.vec16().slice(), tag: e.vec8().slice() }))));
      r.expectEnd();
      return back.length === list.length && back.every((b, i) => b.type === list[i].type && equalConstantTime(b.data, list[i].data) && equalConstantTime(b.tag, list[i].tag));
    }),
    { numRuns: 300, seed: 8446 },
  );
  t.pass('300 random structures round-trip');
});

t.test('nameOf: registry names, and hex for unknown values', async (t) => {
  t.equal(nameOf(ExtensionType, 0x002b), 'supported_versions');
  t.equal(nameOf(ExtensionType, 0xff01), 'renegotiation_info');
  t.equal(nameOf(ExtensionType, 0x1234), '0x1234');
  t.equal(nameOf(ExtensionType, 0x0002), '0x0002', 'padded to four hex digits');
  t.equal(nameOf(HandshakeType, 99, 2), '0x63', 'a handshake type, two digits');
  t.equal(nameOf(ContentType, 0x18, 2), '0x18');
  t.equal(nameOf(ContentType, 0x17, 2), 'application_data');
  t.equal(nameOf(NamedGroup, 0x001d), 'x25519');
  t.equal(nameOf(NamedGroup, 0xfe00), '0xfe00');
  t.equal(alertName(50), 'decode_error');
  t.equal(alertName(200), undefined);
  const e = new TlsError('PeerSentAlert', undefined, { remote: true, alertCode: 200 });
  t.equal(e.alert, 'alert_200', 'an unknown received alert keeps its code');
  t.match(e.message, /tls alert: alert_200 \(200\) received/);
});

t.test('byte helpers', async (t) => {
  t.equal(toHex(fromHex('00 ff 7F\n10')), '00ff7f10', 'fromHex ignores whitespace and case');
  t.throws(() => fromHex('abc'), TypeError, 'odd length');
  t.throws(() => fromHex('zz'), TypeError, 'not hex');
  t.equal(toHex(concat(fromHex('01'), new Uint8Array(0), fromHex('0203'))), '010203');
  t.ok(equalConstantTime(fromHex('0102'), fromHex('0102')));
  t.notOk(equalConstantTime(fromHex('0102'), fromHex('0103')));
  t.notOk(equalConstantTime(fromHex('0102'), fromHex('010200')), 'different lengths differ');
  const k = fromHex('deadbeef');
  wipe(k, undefined, null);
  t.equal(toHex(k), '00000000');
  t.equal(fromUtf8(utf8('§5.2 ✓')), '§5.2 ✓');
});
