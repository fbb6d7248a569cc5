/** A seeded ChaCha20 keystream for the network simulator's injected randomness: same seed, same bytes. */
import { chacha20 } from '@noble/ciphers/chacha.js';

export function seededBytes(seed: number): (n: number) => Uint8Array {
  const key = new Uint8Array(32);
  new DataView(key.buffer).setUint32(0, seed);
  let call = 0;
  return (n) => {
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setUint32(0, call++);
    return chacha20(key, nonce, new Uint8Array(n));
  };
}
