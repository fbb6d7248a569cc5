/**
 * A client Connection driven by hand whose close_notify the test seals itself, padded (RFC 8446 §5.4: "senders
 * MAY pad any record", as OpenSSL's -record_padding and tlslite-ng do). This stack never pads, so a test that needs a
 * peer that does builds the record here: under the client's application traffic key (from its key log), with the
 * next sequence number.
 */
import { AlertDescription, ContentType } from '../../lib/codec/enums.js';
import { fromHex } from '../../lib/codec/bytes.js';
import { Connection } from '../../lib/connection/connection.js';
import type { ClientOptions } from '../../lib/config/options.js';
import { nobleProvider } from '../../lib/crypto/noble.js';
import { trafficKeys } from '../../lib/keyschedule/schedule.js';
import { Deframer } from '../../lib/record/deframer.js';
import { RecordProtection } from '../../lib/record/protection.js';
import { SUITES } from '../../lib/suites.js';

export class PaddingClient {
  readonly connection: Connection;
  private readonly secrets = new Map<string, Uint8Array>();
  /** Protected records the connection has written since the handshake (the next one's sequence number). */
  private sent = 0;

  constructor(options: Omit<ClientOptions, 'crypto' | 'keyLog'>) {
    this.connection = Connection.client({
      ...options,
      crypto: nobleProvider,
      keyLog: (line) => void this.secrets.set(line.split(' ')[0], fromHex(line.split(' ')[2])),
    });
  }

  /** `data` as the connection's records (after the handshake), counted for the close_notify's sequence number. */
  write(data: Uint8Array): Uint8Array[] {
    this.connection.write(data);
    const chunks = this.connection.takeOutputChunks();
    const deframer = new Deframer();
    for (const c of chunks) for (deframer.push(c); deframer.next(); ) this.sent++;
    return chunks;
  }

  /** A close_notify alert record with `padding` zero bytes after its content type (24 + padding bytes). */
  closeNotify(padding: number): Uint8Array {
    const info = this.connection.handshake;
    if (!info) throw new Error('closeNotify: the handshake has not completed');
    const suite = SUITES[info.suite];
    const { key, iv } = trafficKeys(nobleProvider, suite.hash, this.secrets.get('CLIENT_TRAFFIC_SECRET_0')!, suite.keyLength, suite.ivLength);
    const protection = new RecordProtection(nobleProvider, suite, key, iv);
    protection.dangerousSetSequence(0, this.sent);
    return protection.seal(ContentType.alert, Uint8Array.of(1, AlertDescription.close_notify), padding);
  }
}
