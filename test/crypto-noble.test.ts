/**
 * What is particular to the noble provider: its scalar derivation is noble's own, it wipes what it
 * holds, it takes an injected random source, and its modules stay runtime-neutral.
 * (The known-answer vectors shared with the node provider live in crypto-providers.test.ts.)
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { p256, p384 } from '@noble/curves/nist.js';
import t from 'tap';
import { toHex, utf8 } from '../lib/codec/bytes.js';
import { P256_SPEC, P384_SPEC, nistScalarFromSeed } from '../lib/crypto/groups.js';
import { createNobleProvider, nobleProvider } from '../lib/crypto/noble.js';

/** Deterministic bytes: SHA-256(label || counter) blocks. */
function detBytes(label: string, n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0, c = 0; i < n; i += 32, c++) {
    const block = nobleProvider.hash('SHA-256').digest(utf8(`${label}/${c}`));
    out.set(block.subarray(0, Math.min(32, n - i)), i);
  }
  return out;
}

t.test('NIST scalars are exactly noble utils.randomSecretKey(seed)', async (tt) => {
  for (const [spec, curve] of [
    [P256_SPEC, p256],
    [P384_SPEC, p384],
  ] as const) {
    tt.equal(spec.randomLength, curve.lengths.seed, `${spec.name}: randomLength is noble's seed length`);
    const seeds = [new Uint8Array(spec.randomLength), new Uint8Array(spec.randomLength).fill(0xff)];
    for (let k = 0; k < 20; k++) seeds.push(detBytes(`${spec.name} seed ${k}`, spec.randomLength));
    for (const seed of seeds) {
      tt.equal(toHex(nistScalarFromSeed(spec, seed)), toHex(curve.utils.randomSecretKey(seed)), `${spec.name} seed ${toHex(seed).slice(0, 12)}..`);
    }
    tt.equal(toHex(nistScalarFromSeed(spec, new Uint8Array(spec.randomLength))), '00'.repeat(spec.fieldLength - 1) + '01', `${spec.name}: the zero seed maps to scalar 1`);
    tt.throws(() => nistScalarFromSeed(spec, new Uint8Array(spec.fieldLength)), TypeError, `${spec.name}: a seed of only fieldLength bytes is refused`);
  }
});

t.test('an injected random source is the one used', async (tt) => {
  let calls = 0;
  const p = createNobleProvider({
    random: (n) => {
      calls++;
      return new Uint8Array(n).fill(7);
    },
  });
  tt.equal(toHex(p.random(4)), '07070707');
  tt.equal(calls, 1);
  tt.equal(p.name, 'noble');
});

t.test('destroy() wipes the key material held', async (tt) => {
  for (const name of ['x25519', 'secp256r1', 'secp384r1'] as const) {
    const g = nobleProvider.group(name)!;
    const randomness = detBytes(name, g.randomLength);
    const c = g.start(randomness);
    const server = g.respond(c.share, detBytes(`${name} server`, g.randomLength));
    randomness.fill(0);
    tt.equal(toHex(c.complete(server.share)), toHex(server.sharedSecret), `${name}: the share keeps its own copy of the private key`);
    const priv = (backendOf(c) as unknown as { priv: Uint8Array }).priv;
    tt.ok(priv.some((b) => b !== 0), `${name}: a private key is held before destroy`);
    c.destroy();
    tt.ok(priv.every((b) => b === 0), `${name}: the private key bytes are zero after destroy`);
  }
  const aead = nobleProvider.aead('AES-256-GCM', detBytes('key', 32));
  const key = (backendOf(aead) as unknown as { key: Uint8Array }).key;
  tt.ok(key.some((b) => b !== 0), 'an AEAD key is held before destroy');
  aead.destroy();
  tt.ok(key.every((b) => b === 0), 'the AEAD key bytes are zero after destroy');
});

t.test('the noble provider and its helpers import nothing from node:', async (tt) => {
  for (const file of ['noble.js', 'groups.js', 'params.js', 'provider.js', 'checked.js', 'ffdhe.js', 'hybrid.js']) {
    const src = readFileSync(fileURLToPath(new URL(`../lib/crypto/${file}`, import.meta.url)), 'utf8');
    tt.notMatch(src, /from ['"]node:|require\(/, `lib/crypto/${file} is runtime-neutral`);
  }
});

/** The backend object behind the provider boundary's wrapper (lib/crypto/checked.ts), to look at its private state. */
function backendOf(x: object): object {
  return (x as { inner?: object }).inner ?? x;
}
