/**
 * Record offload: lending one direction's application traffic key to the transport, as kernel TLS does.
 *
 * The sans-IO {@link Connection} is synchronous, which is right for the handshake, but in browsers, Deno, Bun
 * and Workers the fast AES-GCM is WebCrypto's, and WebCrypto only answers with promises. So, once the
 * handshake is complete, a transport may borrow the keys of one direction (or both) and seal or open
 * application_data records itself, several at once, while the connection keeps everything else.
 *
 * Who owns what (the kTLS split):
 * - The connection owns the state machine, the key schedule, the record framing of what it receives, and
 *   every record that is not application data: KeyUpdate (ours, the peer's, and the automatic one before the
 *   AEAD limit of RFC 8446 §5.5), NewSessionTicket and other post-handshake messages, alerts, close_notify.
 * - An offload handle ({@link WriteOffload}, {@link ReadOffload}) owns, while it is active, the AEAD key of
 *   one direction and the *assignment* of that direction's sequence numbers to application_data records.
 *
 * The one rule that makes this safe: a sequence number (hence a nonce, §5.3) is handed out exactly once,
 * synchronously, by the one object that owns the direction at that moment. JavaScript runs one thing at a
 * time, so "synchronously" means no other party can interleave:
 * - Writing: the transport calls {@link WriteOffload.reserve} when it *starts* sealing a record (before it
 *   awaits the cipher) and gets that record's nonce; it puts the record in its ordered output queue at that
 *   moment. Whenever the connection needs to send a record itself (an alert, close_notify, a KeyUpdate) it
 *   revokes the handle first — synchronously, from inside whatever call made it need to — and continues
 *   from the handle's next sequence number. Records already reserved are sealed and sent by the transport in
 *   queue order, the connection's record is queued after them (the transport moves `takeOutput()` into the
 *   same queue after every call into the connection), so the wire order is the sequence order.
 *   {@link WriteOffload.reserve} answers null once the handle is revoked or when the next record would pass
 *   the key's limit; the transport then asks the connection for a new handle ({@link
 *   Connection.offloadWrite}), which first sends the automatic KeyUpdate if the limit was the reason.
 * - Reading: the connection still deframes what the transport feeds it, but while a read handle is active it
 *   does not open application_data records: it hands them out when the transport asks, a few at a time
 *   ({@link ReadOffload.takeRecords}), each with its sequence number and nonce, in order. Until then a record
 *   is only bytes in the connection's deframer (the read it came in, or one copy of what was not handed over):
 *   nothing is built for it, so what a read costs beyond its bytes is bounded by how many records the
 *   transport holds at once (about its open window), not by how many the read holds — 64 KiB of the smallest
 *   records (22 bytes) are 2,978, which lent all at once held ≈1.9 MB of objects until they were opened.
 *   The headers are checked when the bytes arrive, so a bad one still ends the connection at once. The transport
 *   opens them, several at once, and accepts, in order, each that authenticates and is non-empty application
 *   data within the size limit. The first record it does not accept (a failed tag, another inner content type
 *   such as a KeyUpdate or an alert, an all-zero plaintext, an oversize or empty one) goes back to the
 *   connection with every record taken after it ({@link Connection.returnRecords}): the connection revokes the
 *   handle, continues its own read sequence number from the first returned record, and processes them itself
 *   with its synchronous cipher, then the records it had not lent yet — so every
 *   hostile record ends in exactly the alert and the named reason the synchronous path gives, and a KeyUpdate
 *   switches keys before the records after it are opened. When those records changed no key (an empty
 *   application_data record, a NewSessionTicket) the same handle is lent again,
 *   with its key, from the next sequence number; after a KeyUpdate it is revoked and the transport asks for a
 *   new one. Records opened speculatively under old keys after a KeyUpdate simply fail and are among those
 *   returned. When the transport hands its input over (`Connection.receiveOwned`), a lent record is a view
 *   of that input, not a copy; else a view of the deframer's own copy of what it had not consumed.
 *
 * Key material: a handle carries a copy of the traffic key; the connection wipes it when the handle is
 * revoked (replaced by a new key, failed, destroyed, closed for reading). The static IV never leaves the connection — the
 * handle computes each nonce. A transport imports the key into its cipher at once (WebCrypto copies the
 * bytes during `importKey`), and stops using its imported key when the handle becomes inactive.
 *
 * Not offloaded: 0-RTT data and everything before the handshake completes (those keys never leave the
 * connection), and any direction after close_notify or an error.
 */
import { wipe } from '../codec/bytes.js';
import type { AeadName } from '../crypto/provider.js';
import { paddingLength } from '../record/padding.js';
import type { DeframedRecord } from '../record/deframer.js';

/** What every offload handle tells the transport. */
export interface OffloadKeys {
  /** The AEAD of the negotiated suite (the transport declines the handle if it cannot run it). */
  readonly aead: AeadName;
  /** The traffic key (wiped by the connection when the handle is revoked). */
  readonly key: Uint8Array;
  /** Counts the handles of this connection and direction (each KeyUpdate makes a new one). */
  readonly generation: number;
  /** False once the connection took the direction back: the transport must not use the key any more. */
  readonly active: boolean;
  /** The sequence number the next record of this direction will have (RFC 8446 §5.3). */
  readonly nextSequence: number;
}

export interface WriteOffload extends OffloadKeys {
  /** The largest application data a record may carry (2^14, or the peer's record_size_limit - 1). */
  readonly maxFragment: number;
  /**
   * The zeros to put after the content type of a record of `contentLength` bytes (RFC 8446 §5.4: the connection's
   * recordPadding option; 0 when it has none). The record's TLSInnerPlaintext is content, type, then these zeros.
   */
  paddingFor(contentLength: number): number;
  /**
   * Assigns the next sequence number to the record the caller is about to seal and returns its nonce, or null
   * when the handle is no longer active or the key has reached its limit (then ask the connection for a new
   * handle). The caller must put that record on the wire, in the order of its reserve() calls.
   */
  reserve(): Uint8Array | null;
}

/** One protected record handed to the transport to open. */
export interface OffloadedRecord {
  /** The whole record: the 5-byte header (the additional data, §5.2) and the encrypted record. */
  readonly bytes: Uint8Array;
  /** Views of `bytes`: its header (the additional data) and the encrypted record after it. */
  readonly header: Uint8Array;
  readonly body: Uint8Array;
  readonly sequence: number;
  readonly nonce: Uint8Array;
}

export interface ReadOffload extends OffloadKeys {
  /** The largest TLSInnerPlaintext to accept (2^14 + 1, or our record_size_limit; RFC 8449 §4). */
  readonly maxInnerPlaintext: number;
  /**
   * Lends the next records received, in order, at most `max` of them (default: every whole record there is),
   * assigning each its sequence number and nonce (RFC 8446 §5.3) as it is taken; none once the handle is
   * inactive. The records not taken stay in the connection as the bytes they arrived in, so ask for about as
   * many as you open at once: what you hold is then bounded by that, whatever a read brings. Feed the
   * connection more only once {@link hasRecords} is false, or its buffer grows with what the peer sends.
   */
  takeRecords(max?: number): OffloadedRecord[];
  /** True while whole records received wait to be taken ({@link takeRecords}); false once the handle is inactive. */
  readonly hasRecords: boolean;
}

/**
 * Where a read handle takes its records from: the connection's deframer (internal to the connection). `next`
 * returns the next whole record received, its header already checked, or null.
 */
export interface RecordSource {
  next(): DeframedRecord | null;
  readonly hasRecord: boolean;
}

/**
 * The connection's side of one lent direction. Internal to the connection: the transport sees it through
 * {@link WriteOffload} or {@link ReadOffload}.
 */
export class LentDirection implements WriteOffload, ReadOffload {
  private isActive = true;
  private wiped = false;
  private next: number;
  /** Reading: the connection's received records (set by the connection when it lends its read direction). */
  source: RecordSource | null = null;

  constructor(
    readonly aead: AeadName,
    readonly key: Uint8Array,
    private readonly iv: Uint8Array,
    /** The first sequence number this handle assigns (since it was lent or last resumed). */
    public firstSequence: number,
    /** The handle assigns sequence numbers below this one only (the key's usage limit, §5.5). */
    private readonly limit: number,
    readonly generation: number,
    readonly maxFragment: number,
    readonly maxInnerPlaintext: number,
    /** The recordPadding option (§5.4): a block size, 0 for none. */
    private readonly paddingBlock = 0,
  ) {
    this.next = firstSequence;
  }

  paddingFor(contentLength: number): number {
    return this.paddingBlock === 0 ? 0 : paddingLength(this.paddingBlock, contentLength, this.maxFragment + 1);
  }

  get active(): boolean {
    return this.isActive;
  }
  get nextSequence(): number {
    return this.next;
  }
  /** True when the key reached its usage limit (the connection then sends a KeyUpdate). */
  get atLimit(): boolean {
    return this.next >= this.limit;
  }

  reserve(): Uint8Array | null {
    if (!this.isActive || this.next >= this.limit) return null;
    return nonceFor(this.iv, this.next++);
  }

  takeRecords(max = Number.POSITIVE_INFINITY): OffloadedRecord[] {
    const out: OffloadedRecord[] = [];
    const source = this.source;
    if (!this.isActive || !source) return out;
    while (out.length < max) {
      const rec = source.next();
      if (!rec) break;
      // The deframer's views: the header (the additional data, §5.2) and the encrypted record.
      const sequence = this.next++;
      out.push({ bytes: rec.bytes, header: rec.header, body: rec.fragment, sequence, nonce: nonceFor(this.iv, sequence) });
    }
    return out;
  }

  get hasRecords(): boolean {
    return this.isActive && this.source !== null && this.source.hasRecord;
  }

  /**
   * Connection only: takes the direction back and wipes the lent key; returns the sequence number the
   * connection continues from. `returned` records (reading) were handed out but not accepted: they are the
   * last ones lent, so the connection continues from the first of them. (Records not taken yet have no
   * sequence number: they are still the connection's.)
   */
  revoke(returned = 0): number {
    const next = this.suspend(returned);
    if (!this.wiped) {
      this.wiped = true;
      wipe(this.key, this.iv);
    }
    return next;
  }

  /**
   * Connection only (reading): like {@link revoke}, but keeps the key, so that the connection can lend it
   * again with {@link resume} when the records it processed did not change it (no new key to derive or
   * import after a record that was merely not application data).
   */
  suspend(returned = 0): number {
    this.isActive = false;
    this.next -= returned;
    return this.next;
  }

  /** Connection only: lends the same key again from `sequence` (never backwards: a nonce is used once). */
  resume(sequence: number): void {
    if (this.wiped || sequence < this.next) throw new Error('resume: the handle was revoked, or the sequence number went backwards');
    this.next = this.firstSequence = sequence;
    this.isActive = true;
  }
}

/** §5.3: the per-record nonce is the static IV XORed with the 64-bit sequence number, left-padded. */
export function nonceFor(iv: Uint8Array, sequence: number): Uint8Array {
  // A copy, always: not iv.slice(), which on a Node Buffer (a provider may return one) is a view of the IV itself,
  // so the XOR below would change the IV and repeat nonces. (Uint8Array.from walks an iterator: 3x slower.)
  const n = new Uint8Array(iv);
  const L = n.length;
  const hi = Math.floor(sequence / 0x1_0000_0000);
  const lo = sequence >>> 0;
  n[L - 8] ^= hi >>> 24;
  n[L - 7] ^= (hi >>> 16) & 0xff;
  n[L - 6] ^= (hi >>> 8) & 0xff;
  n[L - 5] ^= hi & 0xff;
  n[L - 4] ^= lo >>> 24;
  n[L - 3] ^= (lo >>> 16) & 0xff;
  n[L - 2] ^= (lo >>> 8) & 0xff;
  n[L - 1] ^= lo & 0xff;
  return n;
}
