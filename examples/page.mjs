// A web page (bundle it, or map 'qkd-tls/browser' and '@noble/*' with an import map). It takes a QKD key from
// its key manager (ETSI GS QKD 014 over fetch; the KME must allow the page: CORS) and runs TLS over a
// WebSocket, to `qkd-tls server --websocket --kme ...` or through `qkd-tls bridge` to any TLS-PSK server,
// which fetches the same key by its ID. Settings from the page's URL: ?kme=URL&sae=ID&peer=ID&server=WS_URL
import { encodeKeyIdIdentity, Etsi014FetchClient, nobleProvider, tlsClientOverWebSocket } from 'qkd-tls/browser';

const q = new URLSearchParams(location.search);
const [sae, peer] = [q.get('sae'), q.get('peer')];
const show = (line) => document.body.append(Object.assign(document.createElement('p'), { textContent: line }));

// Plain HTTP with an X-SAE-ID header works with a loopback simulator only; a real KME uses mutual TLS.
const kme = new Etsi014FetchClient({ baseUrl: q.get('kme'), saeId: sae });
const [key] = await kme.encKeys(peer, { number: 1 });
const psk = { identity: encodeKeyIdIdentity({ keyId: key.keyId, saeId: sae }), secret: key.key, hash: 'SHA-256' };

const tls = await tlsClientOverWebSocket(q.get('server'), { crypto: nobleProvider, psks: [psk] });
const { version, suite, kex, group } = await tls.handshake;
key.key.fill(0); // one key, one handshake
show(`${version} ${suite} ${kex} ${group} on QKD key ${key.keyId}`);

const writer = tls.writable.getWriter();
await writer.write(new TextEncoder().encode('hello from a page\n'));
await writer.close(); // close_notify
show(await new Response(tls.readable).text());
show(tls.connection.peerClosed ? 'closed with close_notify' : 'cut short');
