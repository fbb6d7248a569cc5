/**
 * The web demo's page script (served by `qkd-tls demo --web`): in the browser, take a QKD key from the key
 * manager simulator (ETSI GS QKD 014 enc_keys, over fetch; the simulator allows loopback pages by CORS), run
 * the TLS 1.3 handshake with it as the external PSK over a WebSocket to the qkd-tls server (which fetches the
 * same key by its ID with dec_keys), echo a message, and show each step, the key ID and what was negotiated.
 * #result gets data-ok="true" with the suite and the key ID once the echo is verified, data-ok="false" and
 * the error otherwise. Plain browser JavaScript (a module); qkd-tls comes from `qkd-tls/browser`.
 */
import { encodeKeyIdIdentity, Etsi014FetchClient, nobleProvider, tlsClientOverWebSocket } from 'qkd-tls/browser';

const config = JSON.parse(document.getElementById('config').textContent);
const steps = document.getElementById('steps');
const params = document.querySelector('#params tbody');
const result = document.getElementById('result');

function step(text, detail) {
  const li = document.createElement('li');
  li.textContent = text;
  if (detail) {
    const d = document.createElement('span');
    d.className = 'detail';
    d.textContent = detail;
    li.append(d);
  }
  steps.append(li);
  return li;
}

function param(name, value) {
  const tr = document.createElement('tr');
  for (const v of [name, value]) {
    const td = document.createElement('td');
    td.textContent = v;
    tr.append(td);
  }
  params.append(tr);
}

async function run() {
  const kme = new Etsi014FetchClient({ baseUrl: config.kmeUrl, saeId: config.clientSaeId, timeoutMs: 5000 });
  const status = await kme.status(config.serverSaeId);
  step(`Asked ${status.source_KME_ID}, the key manager of this page's SAE "${config.clientSaeId}", for its link to "${config.serverSaeId}"`, `${status.stored_key_count} keys of ${status.key_size} bits ready (GET ${config.kmeUrl}/api/v1/keys/${config.serverSaeId}/status)`);

  const [key] = await kme.encKeys(config.serverSaeId, { number: 1 });
  step(`Got a new QKD key from ${status.source_KME_ID} (enc_keys)`, `key ID ${key.keyId}; ${key.key.length * 8} bits, kept in this page only`);
  const identity = encodeKeyIdIdentity({ keyId: key.keyId, saeId: config.clientSaeId });
  const psk = { identity, secret: key.key, hash: 'SHA-256' };

  const tls = await tlsClientOverWebSocket(config.serverUrl, { crypto: nobleProvider, psks: [psk] });
  step(`Opened a WebSocket to the qkd-tls server (${tls.webSocket.api})`, config.serverUrl);
  step('Sent the ClientHello, naming the key by its ID in the PSK identity', new TextDecoder().decode(identity));
  const info = await tls.handshake;
  key.key.fill(0); // the handshake is done: the QKD key is not needed any more
  step(`Handshake complete: the server fetched key ${key.keyId} from its own key manager (dec_keys) and both sides proved they hold it`, `${info.version}, ${info.suite}, ${info.kex}${info.group ? ` with ${info.group}` : ''}`);
  param('Protocol', info.version);
  param('Cipher suite', info.suite);
  param('Key exchange', info.kex === 'psk_dhe_ke' ? `psk_dhe_ke (the QKD key and an ephemeral ${info.group} exchange: forward secrecy)` : 'psk_ke (the QKD key alone)');
  param('Group', info.group ?? '—');
  param('PSK identity', info.identity);
  param('QKD key ID', key.keyId);
  param('Transport', `WebSocket (${tls.webSocket.api})`);

  const message = `hello from the page, over TLS 1.3 on QKD key ${key.keyId}`;
  const writer = tls.writable.getWriter();
  await writer.write(new TextEncoder().encode(message));
  const reader = tls.readable.getReader();
  let echoed = '';
  const decoder = new TextDecoder();
  while (echoed.length < message.length) {
    const { value, done } = await reader.read();
    if (done) break;
    echoed += decoder.decode(value, { stream: true });
  }
  if (echoed !== message) throw new Error(`the echo differs from what was sent: ${JSON.stringify(echoed.slice(0, 200))}`);
  step('Sent a message over the encrypted connection; the server echoed it back, verified', message);
  await writer.close(); // close_notify
  for (;;) {
    const { done } = await reader.read();
    if (done) break;
  }
  step(tls.connection.peerClosed ? 'Closed: close_notify sent and received' : 'Closed (the server sent no close_notify)');

  result.dataset.ok = 'true';
  result.dataset.suite = info.suite;
  result.dataset.keyId = key.keyId;
  result.textContent = `OK: ${info.suite} (${info.kex}${info.group ? `, ${info.group}` : ''}) on QKD key ${key.keyId}; echo verified.`;
}

run().catch((e) => {
  const li = step(`Failed: ${e instanceof Error ? e.message : String(e)}`);
  li.className = 'failed';
  result.dataset.ok = 'false';
  result.textContent = `Error: ${e instanceof Error ? e.message : String(e)}`;
});
