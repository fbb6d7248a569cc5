// Deno, over Deno.connect: deno run --allow-net=127.0.0.1 examples/deno.mjs HOST PORT IDENTITY PSK_HEX
import { nobleProvider } from 'qkd-tls';
import { tlsClientOverStreams } from 'qkd-tls/streams';

const [host, port, identity, pskHex] = Deno.args;
const psk = {
  identity: new TextEncoder().encode(identity),
  secret: Uint8Array.from(pskHex.match(/../g), (h) => parseInt(h, 16)),
  hash: 'SHA-256',
};

const tcp = await Deno.connect({ hostname: host, port: Number(port) });
const tls = tlsClientOverStreams(tcp, { crypto: nobleProvider, psks: [psk] });
const { version, suite, kex, group } = await tls.handshake;
console.log(version, suite, kex, group);

const writer = tls.writable.getWriter();
await writer.write(new TextEncoder().encode('hello from Deno\n'));
await writer.close(); // close_notify, then tcp.closeWrite(): the answer can still arrive
for await (const echo of tls.readable) await Deno.stdout.write(echo);
console.log(tls.connection.peerClosed ? 'closed with close_notify' : 'cut short');
