/**
 * The web demo's page script (served by `qkd-tls demo --web`): in the browser, open a WebSocket to the qkd-tls
 * server, then take a QKD key from the key manager simulator (ETSI GS QKD 014 enc_keys, over fetch; the simulator
 * allows loopback pages by CORS), run the TLS 1.3 handshake with it as the external PSK over that WebSocket (the
 * server fetches the same key by its ID with dec_keys), echo a message, and show each step, the key ID and what
 * was negotiated. The WebSocket comes first: a server that is down costs no key.
 * #result gets data-ok="true" with the suite and the key ID once the echo is verified, data-ok="false" and
 * the error otherwise. The connection's trace hook (createTracer) fills #handshake-trace with every record and
 * handshake message, field by field, as nested <details> like Wireshark's packet details (no key log: no
 * secrets). Plain browser JavaScript (a module); qkd-tls comes from `qkd-tls/browser`. Page data goes into
 * the DOM as text only (textContent), never as HTML.
 */
import { connectWebSocket, createTracer, encodeKeyIdIdentity, Etsi014FetchClient, nobleProvider, tlsClientOverStreams } from 'qkd-tls/browser';

const config = JSON.parse(document.getElementById('config').textContent);
const steps = document.getElementById('steps');
const params = document.querySelector('#params tbody');
const result = document.getElementById('result');
const traceSection = document.getElementById('handshake-trace');
const traceList = traceSection.querySelector('.trace');

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

/** An element with a class and text. */
function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** `[offset+length] name: value`, the line of one field (offsets from the start of its record or message). */
function fieldLine(node) {
  const line = el('span', 'field');
  line.append(el('span', 'where', `[${String(node.offset).padStart(4, '0')}+${node.length}]`), ' ', el('span', 'name', node.name));
  if (node.value !== undefined) line.append(': ', el('span', 'value', node.value));
  return line;
}

/** One TraceNode: a leaf line, or a collapsible <details> holding its fields (open if `open`). */
function fieldElement(node, open) {
  if (!node.children || node.children.length === 0) {
    const leaf = el('div', 'leaf');
    leaf.append(fieldLine(node));
    return leaf;
  }
  const details = el('details', 'node');
  details.open = open;
  const summary = el('summary');
  summary.append(fieldLine(node));
  details.append(summary);
  for (const c of node.children) details.append(fieldElement(c, false));
  return details;
}

/**
 * One trace event (a record, or a handshake message inside the record that completed it): a <details> whose
 * summary says who sent it, where it starts in that direction's byte stream, and what it is.
 */
function eventElement(event) {
  const sent = event.direction === 'sent';
  const details = el('details', `event ${event.kind} ${event.direction}`);
  const summary = el('summary');
  const what = event.kind === 'record' ? 'record' : 'message';
  summary.append(
    el('span', 'dir', sent ? 'page → server' : 'server → page'),
    ' ',
    el('span', 'kind', `${what} @${event.streamOffset ?? 0}`),
    ' ',
    el('span', 'name', event.tree.name),
  );
  if (event.tree.value) summary.append(' ', el('span', 'value', `(${event.tree.value})`));
  details.append(summary);
  const fields = el('div', 'fields');
  for (const c of event.tree.children ?? []) fields.append(fieldElement(c, true));
  details.append(fields);
  return details;
}

/** The connection's trace hook: records at the top level, each handshake message nested in its record. */
function handshakeTracer() {
  let lastRecord = { sent: null, received: null };
  return createTracer((event) => {
    if (event.kind === 'secret') return; // never shown (the page keeps no key log anyway)
    try {
      const item = eventElement(event);
      if (event.kind === 'record' || !lastRecord[event.direction]) {
        traceList.append(item);
        if (event.kind === 'record') lastRecord = { ...lastRecord, [event.direction]: item };
      } else lastRecord[event.direction].append(item);
      traceSection.hidden = false;
    } catch (e) {
      // A trace hook must not throw (it runs inside the connection): say so on the page instead.
      traceList.append(el('p', 'trace-failed', `This record could not be shown: ${e instanceof Error ? e.message : String(e)}`));
    }
  });
}

/** "Expand all" / "Collapse all" for the trace. */
function traceControls() {
  const bar = el('div', 'trace-controls');
  for (const [label, open] of [['Expand all', true], ['Collapse all', false]]) {
    const b = el('button', '', label);
    b.type = 'button';
    b.addEventListener('click', () => {
      for (const d of traceList.querySelectorAll('details')) d.open = open;
    });
    bar.append(b);
  }
  traceList.before(bar);
}

async function run() {
  const kme = new Etsi014FetchClient({ baseUrl: config.kmeUrl, saeId: config.clientSaeId, timeoutMs: 5000 });
  const status = await kme.status(config.serverSaeId);
  step(`Asked ${status.source_KME_ID}, the key manager of this page's SAE "${config.clientSaeId}", for its link to "${config.serverSaeId}"`, `${status.stored_key_count} keys of ${status.key_size} bits ready (GET ${config.kmeUrl}/api/v1/keys/${config.serverSaeId}/status)`);

  // The WebSocket first, then the key: the KME hands each key out once, so a server that is down (or a WebSocket
  // that does not open) must not cost one (as README's page example does).
  const ws = await connectWebSocket(config.serverUrl);
  step(`Opened a WebSocket to the qkd-tls server (${ws.api})`, config.serverUrl);

  let key;
  try {
    [key] = await kme.encKeys(config.serverSaeId, { number: 1 });
  } catch (e) {
    ws.close(); // no key, no handshake: the server is not left waiting for a ClientHello
    throw e;
  }
  step(`Got a new QKD key from ${status.source_KME_ID} (enc_keys)`, `key ID ${key.keyId}; ${key.key.length * 8} bits, kept in this page only`);
  const identity = encodeKeyIdIdentity({ keyId: key.keyId, saeId: config.clientSaeId });
  const psk = { identity, secret: key.key, hash: 'SHA-256' };

  const tls = tlsClientOverStreams(ws, { crypto: nobleProvider, psks: [psk], trace: handshakeTracer() });
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
  param('Transport', `WebSocket (${ws.api})`);

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

traceControls();
run().catch((e) => {
  const li = step(`Failed: ${e instanceof Error ? e.message : String(e)}`);
  li.className = 'failed';
  result.dataset.ok = 'false';
  result.textContent = `Error: ${e instanceof Error ? e.message : String(e)}`;
});
