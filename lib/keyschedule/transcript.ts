/**
 * The running transcript hash (RFC 8446 §4.4.1): Hash(Handshake Context), fed with whole handshake messages
 * (type, length and body, as received or sent).
 */
import { Writer } from '../codec/writer.js';
import { HandshakeType } from '../codec/enums.js';
import type { CryptoProvider, HashName, HashState } from '../crypto/provider.js';

export class Transcript {
  private state: HashState;

  constructor(
    private readonly crypto: CryptoProvider,
    readonly hash: HashName,
  ) {
    this.state = crypto.hash(hash).create();
  }

  /** Adds one or more encoded handshake messages. */
  add(...messages: Uint8Array[]): this {
    for (const m of messages) this.state.update(m);
    return this;
  }

  /** Transcript-Hash of everything added so far. */
  current(): Uint8Array {
    return this.state.peek();
  }

  /** The hash of everything so far plus `extra`, without adding `extra` (for binders and Finished checks). */
  currentWith(extra: Uint8Array): Uint8Array {
    const c = this.state.clone();
    c.update(extra);
    return c.peek();
  }

  /** An independent copy of this transcript. */
  clone(): Transcript {
    const t = Object.create(Transcript.prototype) as Transcript;
    Object.assign(t, { crypto: this.crypto, hash: this.hash, state: this.state.clone() });
    return t;
  }

  /**
   * §4.4.1: after a HelloRetryRequest, ClientHello1 is replaced by
   * message_hash(254) || 00 00 Hash.length || Hash(ClientHello1). Call this after adding only ClientHello1.
   */
  replaceWithMessageHash(): this {
    const h = this.state.peek();
    this.state = this.crypto.hash(this.hash).create();
    this.state.update(messageHash(h));
    return this;
  }
}

/** The synthetic message_hash handshake message of §4.4.1. */
export function messageHash(clientHello1Hash: Uint8Array): Uint8Array {
  return new Writer(4 + clientHello1Hash.length).u8(HandshakeType.message_hash).vec24(clientHello1Hash).finish();
}
