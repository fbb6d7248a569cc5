/**
 * The address a command prints (server's and bridge's "listening" line, a peer in any line) is one that --listen,
 * --connect and --allow take back: an IPv6 address in brackets. The server printed `address=::1:41729` for
 * `--listen [::1]:0`, which `--connect` refused ("expected HOST:PORT"), while the proxy and kme printed
 * `[::1]:...` (found by review). The end-to-end check binds ::1, which the tests do not (127.0.0.1 only): it was
 * made by hand, `server --listen [::1]:0` then `client --connect` with the printed address.
 */
import t from 'tap';
import { hostPortText } from '../bin/cli/address.js';
import { parseHostPort } from '../bin/cli/tls-options.js';

t.test('hostPortText brackets an IPv6 address, and --connect takes what it prints', async (t) => {
  t.equal(hostPortText('127.0.0.1', 4433), '127.0.0.1:4433', 'IPv4 as it is');
  t.equal(hostPortText('::1', 4433), '[::1]:4433', 'IPv6 in brackets');
  t.equal(hostPortText('::ffff:127.0.0.1', '50000'), '[::ffff:127.0.0.1]:50000', 'an IPv4-mapped peer in brackets');
  for (const [host, port] of [
    ['127.0.0.1', 4433],
    ['::1', 4433],
    ['fe80::1', 65535],
    ['localhost', 1],
  ] as const) {
    t.same(parseHostPort('connect', hostPortText(host, port), 'connect'), { host, port }, `${host} ${port}: printed, then read back by --connect`);
  }
});
