/**
 * WHATWG byte streams over a socket with `read`/`write`/`closeWrite`/`close` methods, such as Deno's `Deno.Conn`,
 * for the streams transport (lib/transport/streams.ts), that keep the socket open after the peer's end of stream.
 *
 * Why: `Deno.Conn`'s own `readable` closes the whole socket when it reads the end of stream (denoland/deno#22258,
 * #27510: "the underlying resource ... gets closed entirely"), so a server that reads the client's FIN can no longer
 * write: the rest of an echo, its own close_notify (RFC 8446 §6.1 lets each side close its direction on its own).
 * The transport therefore stops reading at the peer's close_notify, waiting for a record that may be one to be opened
 * before reading on; it cannot see inside a record before WebCrypto has opened it, so it takes a full-size record
 * for data, and a peer that pads its close_notify to the full size (recordPadding 16385, say) and half-closes right
 * behind it can still make Deno cut the echo. Over these streams the end of stream closes nothing: the socket is
 * closed once both directions are over (our close_notify sent, and the peer's end of stream read or the readable
 * cancelled), or at once when the transport gives up on it (a failure: it aborts the writable).
 */
/** What these streams need of a socket: `Deno.Conn` has it (and Deno's TLS connections, and its Unix sockets). */
export interface ConnLike {
  /** Reads into `p`; resolves with the number of bytes read, or null at the end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; resolves with how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
  /** Ends our direction (TCP FIN); the other stays open. */
  closeWrite(): Promise<void>;
  /** Closes the socket. */
  close(): void;
}

/** A ByteStreamPair of lib/transport/streams.ts (spelled out here: that file re-exports this one). */
export interface ConnByteStreams {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /** Ends our direction (the socket's closeWrite); the socket is closed once the peer's end of stream was read too. */
  closeWrite(): Promise<void>;
}

export interface ConnStreamsOptions {
  /** Bytes asked of the socket per read (a fresh buffer each time: the transport keeps views of what it reads). Default 64 KiB. */
  readonly readSize?: number;
}

/**
 * Byte streams over `conn` that do not close it when the peer's end of stream is read; pass them to
 * `tlsServerOverStreams` or `tlsClientOverStreams` instead of the socket itself (`tlsServerOverStreams(connStreams(conn),
 * options)`) so that what we write after the peer has finished still arrives.
 */
export function connStreams(conn: ConnLike, options: ConnStreamsOptions = {}): ConnByteStreams {
  const readSize = options.readSize ?? 64 * 1024;
  if (!(Number.isInteger(readSize) && readSize >= 1 && readSize <= 16 * 1024 * 1024)) throw new RangeError(`connStreams: readSize must be an integer from 1 to 16777216, got ${readSize}`);
  let readEnded = false;
  let writeEnded = false;
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch {
      /* closed already */
    }
  };
  const closeIfOver = (): void => {
    if (readEnded && writeEnded) close();
  };
  const readable = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const buffer = new Uint8Array(readSize);
        let n: number | null;
        try {
          do n = await conn.read(buffer);
          while (n === 0); // (nothing read yet: a pull that enqueues nothing is not called again)
        } catch (e) {
          close();
          throw e; // (a pull that rejects errors the stream with it)
        }
        if (n === null) {
          readEnded = true;
          controller.close();
          closeIfOver();
        } else controller.enqueue(buffer.subarray(0, n));
      },
      cancel() {
        // Nothing more is read, but our direction may still be writing: the plaintext readable was cancelled and the
        // application goes on writing, as over any other transport. The socket is closed once our direction is over
        // too (at once if it is); a transport that gives up on the connection aborts the writable, which closes it.
        readEnded = true;
        closeIfOver();
      },
    },
    { highWaterMark: 0 }, // read only when asked: what is not read stays in the kernel's buffer (backpressure)
  );
  const writable = new WritableStream<Uint8Array>({
    start(controller) {
      // The streams spec calls abort() below only once the write in progress has settled, and a write to a peer that
      // does not read never settles: the socket stayed open for good (the transport aborts this writable when it gives
      // up on a connection: a failure, or the application's abort). The controller's signal fires at once; closing
      // the socket then also fails the write in progress.
      const signal = (controller as { signal?: AbortSignal }).signal;
      signal?.addEventListener('abort', close, { once: true });
    },
    async write(chunk) {
      try {
        for (let at = 0; at < chunk.length; ) at += await conn.write(chunk.subarray(at));
      } catch (e) {
        // A socket whose write failed (reset, broken pipe) is done with, as one whose read failed: close it. The
        // errored writable never ends our direction, so after the peer's end of stream nothing else would.
        close();
        throw e;
      }
    },
    async close() {
      writeEnded = true;
      await conn.closeWrite().catch(() => {});
      closeIfOver();
    },
    abort() {
      close();
    },
  });
  return {
    readable,
    writable,
    async closeWrite() {
      writeEnded = true;
      try {
        await conn.closeWrite();
      } finally {
        closeIfOver();
      }
    },
  };
}
