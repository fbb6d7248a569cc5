// A Cloudflare Worker (bundle it: qkd-tls resolves like any npm package). Its env gives TLS_HOST, TLS_PORT,
// PSK_IDENTITY and PSK_HEX; each request opens a TLS-PSK connection and answers with what happened.
import { connect } from 'cloudflare:sockets';
import { nobleProvider, tlsClientOverStreams } from 'qkd-tls/browser';

export default {
  async fetch(request, env) {
    const psk = {
      identity: new TextEncoder().encode(env.PSK_IDENTITY),
      secret: Uint8Array.from(env.PSK_HEX.match(/../g), (h) => parseInt(h, 16)),
      hash: 'SHA-256',
    };
    // allowHalfOpen: closing our side (after close_notify) leaves the answer's way open.
    const socket = connect({ hostname: env.TLS_HOST, port: Number(env.TLS_PORT) }, { allowHalfOpen: true });
    const tls = tlsClientOverStreams(socket, { crypto: nobleProvider, psks: [psk] });
    const { version, suite, kex, group } = await tls.handshake;

    const writer = tls.writable.getWriter();
    await writer.write(new TextEncoder().encode('hello from a Worker\n'));
    await writer.close(); // close_notify
    const echo = await new Response(tls.readable).text();
    return Response.json({ version, suite, kex, group, echo, closeNotify: tls.connection.peerClosed });
  },
};
