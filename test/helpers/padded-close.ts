/**
 * A client Connection driven by hand whose close_notify the test seals itself, with any padding (RFC 8446 §5.4),
 * under the client's application traffic key (from its key log) and the next sequence number: a close_notify
 * padded apart from the records before it, which the recordPadding option (one block size for every record) does
 * not make.
 */
import { AlertDescription, ContentType } from '../../lib/codec/enums.js';
import { Connection } from '../../lib/connection/connection.js';
import type { ClientOptions } from '../../lib/config/options.js';
import { nobleProvider } from '../../lib/crypto/noble.js';
import { Deframer } from '../../lib/record/deframer.js';
import { KeyLog, protection } from './pair.js';

export class PaddingClient {
  readonly connection: Connection;
  private readonly keys = new KeyLog();
  /** Protected records the connection has written since the handshake (the next one's sequence number). */
  private sent = 0;

  constructor(options: Omit<ClientOptions, 'crypto' | 'keyLog'>) {
    this.connection = Connection.client({ ...options, crypto: nobleProvider, keyLog: this.keys.sink });
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
    const p = protection(nobleProvider, info.suite, this.keys.secret('CLIENT_TRAFFIC_SECRET_0'));
    p.dangerousSetSequence(0, this.sent);
    return p.seal(ContentType.alert, Uint8Array.of(1, AlertDescription.close_notify), padding);
  }
}
