// Bun runs qkd-tls's Node transport (node:net is built in): bun examples/bun.mjs HOST PORT IDENTITY PSK_HEX
import { connect } from 'qkd-tls/node';

const [host, port, identity, pskHex] = Bun.argv.slice(2);
const psk = { identity: new TextEncoder().encode(identity), secret: Buffer.from(pskHex, 'hex'), hash: 'SHA-256' };

const socket = connect({ host, port: Number(port), psks: [psk] }, () => {
  const { version, suite, kex, group } = socket.handshake;
  console.log(version, suite, kex, group);
  socket.end('hello from Bun\n'); // then close_notify
});
socket.on('data', (echo) => process.stdout.write(echo));
socket.on('end', () => console.log(socket.connection.peerClosed ? 'closed with close_notify' : 'cut short'));
socket.on('error', (e) => {
  console.error(e.message);
  process.exitCode = 1;
});
