/**
 * echoOnce (bin/cli/echo-once.ts), one connection of `qkd-tls demo` and `demo --network`: the keys its PSK
 * callback takes are released when the socket closes, and also when they arrive after it closed (the TCP
 * connection failed while the key manager was still answering): they were left unwiped, since the release was
 * called on 'close', before the callback had set it.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import t from 'tap';
import { echoOnce, type EchoResult } from '../bin/cli/echo-once.js';
import { makePsk } from './helpers/pair.js';

t.test('keys that arrive after the socket closed are released as they arrive', async (t) => {
  // A loopback port with nobody listening: the connection is refused.
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));

  let answer!: () => void;
  const keyManager = new Promise<void>((r) => (answer = r));
  let released = 0;
  const keys: { release?: () => void } = {};
  const psk = makePsk('echo-once-late');
  const closed = echoOnce(
    {
      host: '127.0.0.1',
      port,
      psks: async () => {
        await keyManager;
        keys.release = () => released++;
        return [psk];
      },
    },
    'never sent',
    { echoed: '' } as EchoResult,
    keys,
  );
  const r = await closed;
  t.match(r.error?.message, /ECONNREFUSED/, 'the connection was refused before the keys came');
  t.equal(released, 0, 'no keys yet');
  answer();
  await keyManager;
  await new Promise((r) => setImmediate(r));
  t.equal(released, 1, 'the late keys are released (wiped) as they arrive');
});
