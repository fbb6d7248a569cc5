/**
 * The offloaded transfer of `qkd-tls bench --runtimes` with none of TLS: the same streams, the same WebCrypto
 * calls and the same unavoidable per-record work of a TLS 1.3 record layer over WebCrypto, and nothing else. It
 * is the limit of any record layer built this way in a runtime, and is reported next to the real transfer
 * (`framingOnlyMbps`) so that a run shows how much of the gap to the raw ceiling is TLS's and how much is the
 * structure's.
 *
 * What it does per record, as lib/transport/webcrypto-records.ts does: the content and its type byte copied into
 * one reused buffer (RFC 8446 §5.2 TLSInnerPlaintext), a fresh 12-byte nonce, the 5-byte header as additional
 * data, one WebCrypto encrypt; the records of one application write joined behind their headers into one write
 * (the first body 64 bytes into its allocation); on the other side each record's header read, one WebCrypto
 * decrypt of a view of what arrived, and the content handed to the application's stream as WebCrypto returned it.
 * Up to `inFlight` records are sealed and as many opened at once, in order. What it leaves out: the key schedule,
 * the state machine, sequence-number limits, KeyUpdate, alerts, content-type and padding checks — all of TLS.
 * Runtime-neutral (WebCrypto and WHATWG streams only). Not a TLS implementation: a measurement.
 */

/** Moves `bytes` (in 64 KiB writes) from one end to the other; returns how much arrived and how long it took. */
export async function framingOnlyTransfer(bytes: number, inFlight: number, now: () => number): Promise<{ amount: number; ms: number }> {
  const subtle = globalThis.crypto.subtle;
  const key = await subtle.importKey('raw', new Uint8Array(16).fill(7), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
  const wire = new TransformStream<Uint8Array, Uint8Array>(undefined, SOCKET_BUFFER, SOCKET_BUFFER);
  const sender = new Sender(key, wire.writable.getWriter(), inFlight);
  const receiver = new Receiver(key, wire.readable.getReader(), inFlight);
  const chunk = new Uint8Array(4 * RECORD).fill(0x62);
  const writes = Math.ceil(bytes / chunk.length);
  const total = writes * chunk.length;
  const reader = receiver.plain.getReader();
  const t0 = now();
  const reading = (async () => {
    let got = 0;
    while (got < total) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`framing-only: the stream ended after ${got} of ${total} bytes`);
      got += value.length;
    }
    return got;
  })();
  for (let i = 0; i < writes; i++) await sender.write(chunk);
  const amount = await reading;
  const ms = now() - t0;
  await sender.close();
  return { amount, ms };
}

const RECORD = 16_384;
const APPLICATION_DATA = 23;
const TAG = 16;
/** As in the real transfer's in-memory pair: four chunks buffered each way. */
const SOCKET_BUFFER: QueuingStrategy<Uint8Array> = { highWaterMark: 4 };

/** A 12-byte nonce from a record counter (the IV's XOR left out: it costs nothing next to the copy). */
function nonce(sequence: number): Uint8Array {
  const n = new Uint8Array(12);
  n[8] = sequence >>> 24;
  n[9] = (sequence >>> 16) & 0xff;
  n[10] = (sequence >>> 8) & 0xff;
  n[11] = sequence & 0xff;
  return n;
}

/** Waits for a change of state (a record sealed, opened or sent, room in a stream). */
class Waiting {
  private waiters: (() => void)[] = [];

  protected changed(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  protected notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}

class Sender extends Waiting {
  private sequence = 0;
  private sealing = 0;
  private unsettled = 0;
  private tail: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  private readonly scratch = new Uint8Array(RECORD + 1);
  private readonly aad = Uint8Array.of(APPLICATION_DATA, 3, 3, 0, 0);

  constructor(
    private readonly key: CryptoKey,
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
    private readonly inFlight: number,
  ) {
    super();
  }

  /** Seals `data` as records; resolves once there is room for more (the records leave in order, joined). */
  async write(data: Uint8Array): Promise<void> {
    const sealed: Promise<ArrayBuffer>[] = [];
    for (let at = 0; at < data.length; at += RECORD) {
      while (this.sealing >= this.inFlight && !this.failure) await this.changed();
      if (this.failure) throw this.failure;
      const n = Math.min(RECORD, data.length - at);
      this.scratch.set(data.subarray(at, at + n));
      this.scratch[n] = APPLICATION_DATA;
      const length = n + 1 + TAG;
      this.aad[3] = length >>> 8;
      this.aad[4] = length & 0xff;
      this.sealing++;
      const p = subtle().encrypt({ name: 'AES-GCM', iv: nonce(this.sequence++), additionalData: this.aad }, this.key, this.scratch.subarray(0, n + 1));
      // (A failure reaches the caller through `tail`, which waits for every record.)
      p.then(
        () => {
          this.sealing--;
          this.notify();
        },
        () => {},
      );
      sealed.push(p);
    }
    // This write's records leave together, after the previous write's.
    this.tail = this.tail.then(() => Promise.all(sealed)).then((bodies) => this.send(bodies));
    this.tail.catch((e: unknown) => {
      this.failure ??= e;
      this.notify();
    });
    while (this.unsettled >= this.inFlight && !this.failure) await this.changed();
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.writer.close();
  }

  private send(bodies: ArrayBuffer[]): void {
    const size = bodies.reduce((s, b) => s + 5 + b.byteLength, 0);
    const out = new Uint8Array(size + 59).subarray(59); // the first body 64 bytes in (see webcrypto-records.ts)
    let at = 0;
    for (const b of bodies) {
      out[at] = APPLICATION_DATA;
      out[at + 1] = 3;
      out[at + 2] = 3;
      out[at + 3] = b.byteLength >>> 8;
      out[at + 4] = b.byteLength & 0xff;
      out.set(new Uint8Array(b), at + 5);
      at += 5 + b.byteLength;
    }
    this.unsettled++;
    this.writer.write(out).then(
      () => {
        this.unsettled--;
        this.notify();
      },
      () => {},
    );
  }

}

class Receiver extends Waiting {
  readonly plain: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private sequence = 0;
  /** Records being opened, in order; each handed on once it and all before it are open. */
  private opening: { done: boolean; value: Uint8Array | null }[] = [];

  constructor(
    private readonly key: CryptoKey,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly inFlight: number,
  ) {
    super();
    this.plain = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.controller = c;
        },
        pull: () => this.notify(),
      },
      { highWaterMark: 4 },
    );
    this.run().catch((e: unknown) => this.controller.error(e));
  }

  private async run(): Promise<void> {
    let carry: Uint8Array | null = null;
    for (;;) {
      while ((this.controller.desiredSize ?? 1) <= 0) await this.changed();
      const { value, done } = await this.reader.read();
      if (done) {
        while (this.opening.length > 0) await this.changed();
        this.controller.close();
        return;
      }
      let bytes = value;
      if (carry) {
        bytes = new Uint8Array(carry.length + value.length);
        bytes.set(carry);
        bytes.set(value, carry.length);
        carry = null;
      }
      let at = 0;
      while (at + 5 <= bytes.length) {
        const length = (bytes[at + 3] << 8) | bytes[at + 4];
        if (at + 5 + length > bytes.length) break;
        while (this.opening.length >= this.inFlight) await this.changed();
        this.open(bytes.subarray(at, at + 5), bytes.subarray(at + 5, at + 5 + length));
        at += 5 + length;
      }
      if (at < bytes.length) carry = bytes.slice(at);
    }
  }

  private open(header: Uint8Array, body: Uint8Array): void {
    const o: { done: boolean; value: Uint8Array | null } = { done: false, value: null };
    this.opening.push(o);
    subtle()
      .decrypt({ name: 'AES-GCM', iv: nonce(this.sequence++), additionalData: header }, this.key, body)
      .then(
        (inner) => {
          o.done = true;
          o.value = new Uint8Array(inner, 0, inner.byteLength - 1); // the content, without its type byte
          if (this.opening[0] === o) this.deliver();
        },
        (e: unknown) => this.controller.error(e),
      );
  }

  private deliver(): void {
    while (this.opening.length > 0 && this.opening[0].done) this.controller.enqueue(this.opening.shift()!.value!);
    this.notify();
  }

}

function subtle(): SubtleCrypto {
  return globalThis.crypto.subtle;
}

type SubtleCrypto = typeof globalThis.crypto.subtle;
type CryptoKey = Awaited<ReturnType<SubtleCrypto['importKey']>>;
