/**
 * Record padding (RFC 8446 §5.4): zeros after a protected record's content type, which hide how long its content
 * is. "Selecting a padding policy that suggests when and how much to pad is a complex topic and is beyond the
 * scope of this specification"; this stack offers the block policy of OpenSSL's SSL_CTX_set_block_padding
 * (`openssl s_client -record_padding N`): the TLSInnerPlaintext (content, content type, zeros) is made a multiple
 * of the block size, within the most the peer accepts in one record.
 */

/** The largest block size: a TLSInnerPlaintext is at most 2^14 + 1 bytes (§5.4), so this pads every record to the full size. */
export const MAX_PADDING_BLOCK = 16_385;

/**
 * Zeros to add after the content type of a record of `contentLength` bytes: up to the next multiple of `block`
 * (0 or 1: none), without the TLSInnerPlaintext passing `maxInnerPlaintext` (2^14 + 1, or the peer's
 * record_size_limit, RFC 8449 §4, which counts the padding too).
 */
export function paddingLength(block: number, contentLength: number, maxInnerPlaintext: number): number {
  if (block <= 1) return 0;
  const inner = contentLength + 1;
  const padded = Math.min(Math.ceil(inner / block) * block, maxInnerPlaintext);
  return padded > inner ? padded - inner : 0;
}

/** Checks the `recordPadding` option: undefined, or an integer from 0 to {@link MAX_PADDING_BLOCK}; else a RangeError. */
export function checkRecordPadding(side: 'client' | 'server', block: unknown): number {
  if (block === undefined) return 0;
  if (typeof block !== 'number' || !Number.isInteger(block) || block < 0 || block > MAX_PADDING_BLOCK) {
    throw new RangeError(`${side}: recordPadding must be an integer from 0 to ${MAX_PADDING_BLOCK} (a block size in bytes, RFC 8446 §5.4; 0 = no padding), got ${String(block)}`);
  }
  return block;
}
