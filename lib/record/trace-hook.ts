/**
 * The record-level trace hook: what a connection tells an observer about each record it sends or receives,
 * after protection is removed (received) or before it is applied (sent). The connection calls it only when
 * one is configured (option `trace`), so a connection without one does no extra work. `lib/trace/` turns
 * these calls into an annotated, Wireshark-like dissection.
 */

export interface RecordTrace {
  readonly direction: 'sent' | 'received';
  /**
   * The 5-byte record header as on the wire (type, legacy_record_version, length). Fewer bytes only for a record
   * the connection refused before its header was whole (see `failure`).
   */
  readonly header: Uint8Array;
  /** True for a protected record (TLSCiphertext, RFC 8446 §5.2): `content` is its decrypted content. */
  readonly protected: boolean;
  /**
   * False for a protected record that was not decrypted (a rejected 0-RTT record skipped under §4.2.10, or one
   * that could not be opened: see `failure`): its `content` is then empty and `type` is the header's.
   */
  readonly opened: boolean;
  /**
   * Why a record could not be read, in the words of the error the connection then fails with: a protected record
   * that could not be opened (its authentication failed, §5.2: bad_record_mac; or its plaintext held no content
   * type, §5.4), or a record refused on its header (§5: an unknown content type; §5.2: a length over 2^14 + 256;
   * then `protected` and `opened` are false, and `content` is empty). Absent for every other record.
   */
  readonly failure?: string;
  /** The content type: the header's, or for a protected record the inner content type (§5.2). */
  readonly type: number;
  /** The plaintext content (without inner type and padding). A view valid only during the call. */
  readonly content: Uint8Array;
  /** The zero padding of a protected record (§5.4), in bytes. */
  readonly paddingLength: number;
}

/** Receives every record a connection sends and receives, in order. Must not throw. */
export type RecordTraceHook = (record: RecordTrace) => void;
