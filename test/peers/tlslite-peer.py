"""
tlslite-ng (github.com/tlsfuzzer/tlslite-ng, pure Python) as a TLS 1.3 external-PSK peer for
test/interop-tlslite.test.ts: one connection on 127.0.0.1, as a client that sends a byte pattern and checks
its echo, or as a server that echoes what one client sends. tlslite-ng is vendored, pinned and unmodified
outside this repository (../shared/vendor/tlslite-ng, on PYTHONPATH); run with Debian's /usr/bin/python3 and
python3-ecdsa.

    tlslite-peer.py --role client --port P --identity ID --psk HEX [--hash sha256|sha384]
                    [--modes psk_dhe_ke,psk_ke] [--suites IANA,...] [--groups NAME,...] [--key-shares NAME,...]
                    [--send N] [--chunk N] [--key-update] [--record-size-limit N] [--other-psk ID:HEX]
                    [--padding N] [--timeout S]
    tlslite-peer.py --role server --port 0 ...   (prints {"event":"listening","port":P} first)

The last line on stdout is one JSON object: {"event":"done",...} with the negotiated version, suite, kex
(psk_ke or psk_dhe_ke), group (null for psk_ke), the PSK identity the ServerHello selected, bytes sent and echoed, KeyUpdates sent and received,
the record limits in force and whether the peer's close_notify arrived; or {"event":"error",...} naming the
alert and its direction (sent or received), with exit status 1. Every socket operation is bounded by --timeout.

A PSK-only tlslite-ng server is handshakeServer(settings=...) with settings.pskConfigs and no certificate
(tlsconnection.py: _handshakeServerAsyncHelper accepts pskConfigs as the only credential and offers the
TLS 1.3 suites alone). A psk_ke client sends an empty key_share (settings.keyShares = []).
"""

import argparse
import json
import socket
import sys

from tlslite.api import HandshakeSettings, TLSConnection
from tlslite.constants import AlertDescription, CipherSuite, ExtensionType, GroupName, KeyUpdateMessageType
from tlslite.errors import TLSLocalAlert, TLSRemoteAlert
from tlslite.messages import Alert, ClientHello, ServerHello

# IANA suite name -> tlslite-ng's cipherNames entry
SUITES = {
    'TLS_AES_128_GCM_SHA256': 'aes128gcm',
    'TLS_AES_256_GCM_SHA384': 'aes256gcm',
    'TLS_CHACHA20_POLY1305_SHA256': 'chacha20-poly1305',
}
FFDHE = ('ffdhe2048', 'ffdhe3072', 'ffdhe4096', 'ffdhe6144', 'ffdhe8192')


class CountingConnection(TLSConnection):
    """
    TLSConnection that records the KeyUpdate messages it receives (tlslite-ng handles them inside read()),
    whether close() got the peer's close_notify (close() treats a connection closed without one as fine too),
    and which PSK identity the handshake used: tlslite-ng has no API for it (the client and the server pick it
    in local variables), so it is read from the hellos as they are sent and received, the ServerHello's
    pre_shared_key selected index (RFC 8446 §4.2.11) into the last ClientHello's identities.
    """

    def __init__(self, sock):
        TLSConnection.__init__(self, sock)
        self.key_updates_received = []
        self.close_notify_received = False
        self.offered_identities = []
        self.selected_index = None

    def selected_identity(self):
        """The identity the ServerHello selected, as text; None without one."""
        if self.selected_index is None or self.selected_index >= len(self.offered_identities):
            return None
        return bytes(self.offered_identities[self.selected_index].identity).decode('utf-8', 'replace')

    def _note_hello(self, msg):
        if isinstance(msg, ClientHello):
            ext = msg.getExtension(ExtensionType.pre_shared_key)
            self.offered_identities = list(ext.identities) if ext is not None else []
        elif isinstance(msg, ServerHello):
            ext = msg.getExtension(ExtensionType.pre_shared_key)
            if ext is not None:  # none in a HelloRetryRequest
                self.selected_index = ext.selected

    def _getMsg(self, expectedType, secondaryType=None, constructorType=None):
        for result in TLSConnection._getMsg(self, expectedType, secondaryType, constructorType):
            if isinstance(result, Alert) and result.description == AlertDescription.close_notify:
                self.close_notify_received = True
            self._note_hello(result)
            yield result

    def _sendMsg(self, msg, randomizeFirstBlock=True, update_hashes=True):
        self._note_hello(msg)
        for result in TLSConnection._sendMsg(self, msg, randomizeFirstBlock, update_hashes):
            yield result

    def _handle_keyupdate_request(self, request):
        self.key_updates_received.append(
            'update_requested' if request.message_type == KeyUpdateMessageType.update_requested
            else 'update_not_requested')
        for result in TLSConnection._handle_keyupdate_request(self, request):
            yield result


def emit(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


def names(text):
    return [n for n in text.split(',') if n] if text else []


def settings_from(args):
    s = HandshakeSettings()
    s.minVersion = (3, 4)
    s.maxVersion = (3, 4)
    s.versions = [(3, 4)]
    # --other-psk keys come first: a client offers them before the real one, a server knows them too
    s.pskConfigs = [(bytearray(ident, 'utf-8'), bytearray.fromhex(key), args.hash)
                    for ident, key in (o.split(':', 1) for o in args.other_psk)]
    s.pskConfigs.append((bytearray(args.identity, 'utf-8'), bytearray.fromhex(args.psk), args.hash))
    s.psk_modes = names(args.modes)
    s.cipherNames = [SUITES[n] for n in names(args.suites)]
    groups = names(args.groups)
    s.eccCurves = [g for g in groups if g not in FFDHE]
    s.dhGroups = [g for g in groups if g in FFDHE]
    if args.role == 'client':
        shares = names(args.key_shares) if args.key_shares is not None else (
            groups[:1] if 'psk_dhe_ke' in s.psk_modes else [])
    else:
        # A server's keyShares is its order of preference among the client's shares.
        shares = groups
    s.keyShares = shares
    if args.record_size_limit is not None:
        s.record_size_limit = args.record_size_limit  # else tlslite-ng's default, 2^14 + 1
    s.ticketKeys = []  # no session tickets: external PSKs only
    return s


def new_connection(sock, args):
    conn = CountingConnection(sock)
    if args.padding:
        # RFC 8446 §5.4: this many zeros after the content type of every protected record (as far as it fits).
        # HandshakeSettings.padding_cb has no effect at the pinned commit (the handshake sets it on the
        # BufferedSocket, not on the RecordLayer that pads), so the driver sets it where tlsfuzzer does.
        conn._recordLayer.padding_cb = lambda size, content_type, max_padding: min(args.padding, max_padding)
    return conn


def pattern(n):
    """n bytes of a fixed pattern (index mod 251), so that a reordered or lost byte shows."""
    return bytes(i % 251 for i in range(n))


def describe(conn, args, version, sent, echoed, key_updates_sent, close_notify):
    group = GroupName.toStr(conn.ecdhCurve) if conn.ecdhCurve is not None else None
    return {
        'event': 'done',
        'role': args.role,
        'version': version,  # read after the handshake: getVersionName() is None once the connection is shut
        'suite': CipherSuite.ietfNames.get(conn.session.cipherSuite, str(conn.session.cipherSuite)),
        'kex': 'psk_dhe_ke' if group is not None else 'psk_ke',
        'group': group,
        'identity': conn.selected_identity(),  # the one the ServerHello selected, not merely --identity
        'sent': sent,
        'echoed': echoed,
        'keyUpdatesSent': key_updates_sent,
        'keyUpdatesReceived': conn.key_updates_received,
        # the largest plaintext tlslite-ng puts in a record / accepts (RFC 8449: the limits minus the content type)
        'sendRecordLimit': conn._send_record_limit,
        'recvRecordLimit': conn._recv_record_limit,
        'closeNotifyReceived': close_notify,
    }


def send_key_update(conn):
    for _ in conn.send_keyupdate_request(KeyUpdateMessageType.update_requested):
        pass


def run_client(args):
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    sock.settimeout(args.timeout)
    conn = new_connection(sock, args)
    conn.handshakeClientCert(settings=settings_from(args))
    version = conn.getVersionName()
    data = pattern(args.send)
    echoed = bytearray()
    key_updates_sent = 0
    at = 0
    while at < len(data):
        if args.key_update and key_updates_sent == 0 and at >= len(data) // 2:
            send_key_update(conn)
            key_updates_sent += 1
        piece = data[at:at + args.chunk]
        conn.write(piece)
        at += len(piece)
        # read this piece's echo before sending the next (no deadlock on full socket buffers)
        while len(echoed) < at:
            got = conn.read(max=at - len(echoed))
            if not got:
                raise RuntimeError('the server closed after %d of %d echoed bytes' % (len(echoed), len(data)))
            echoed += got
    if bytes(echoed) != data:
        raise RuntimeError('the echo differs from what was sent')
    # close_notify, then wait for the server's (closeSocket = False makes close() read it)
    conn.closeSocket = False
    conn.close()
    sock.close()
    emit(describe(conn, args, version, len(data), len(echoed), key_updates_sent, conn.close_notify_received))


def run_server(args):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(1)
    listener.settimeout(args.timeout)
    emit({'event': 'listening', 'port': listener.getsockname()[1]})
    sock, _ = listener.accept()
    listener.close()
    sock.settimeout(args.timeout)
    conn = new_connection(sock, args)
    conn.handshakeServer(settings=settings_from(args))
    version = conn.getVersionName()
    echoed = 0
    key_updates_sent = 0
    while True:
        got = conn.read()
        if not got:
            # close_notify (a close without one raises TLSAbruptCloseError): tlslite-ng has answered with its
            # own and shut the connection down
            break
        conn.write(got)
        echoed += len(got)
        if args.key_update and key_updates_sent == 0:
            send_key_update(conn)
            key_updates_sent += 1
    result = describe(conn, args, version, echoed, echoed, key_updates_sent, True)
    sock.close()
    emit(result)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--role', choices=('client', 'server'), required=True)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--identity', required=True)
    p.add_argument('--psk', required=True, help='the key, hex')
    p.add_argument('--hash', choices=('sha256', 'sha384'), default='sha256')
    p.add_argument('--modes', default='psk_dhe_ke', help='psk_dhe_ke and/or psk_ke, in preference order')
    p.add_argument('--suites', default='TLS_AES_128_GCM_SHA256')
    p.add_argument('--groups', default='x25519')
    p.add_argument('--key-shares', default=None, help='(client) groups to send a share for; "" for none')
    p.add_argument('--send', type=int, default=64, help='(client) bytes to send and expect back')
    p.add_argument('--chunk', type=int, default=16384, help='(client) bytes per write')
    p.add_argument('--key-update', action='store_true',
                   help='send a KeyUpdate (update_requested): a client halfway, a server after its first echo')
    p.add_argument('--record-size-limit', type=int, default=None, help='record_size_limit to advertise (RFC 8449; default tlslite-ng\'s 16385)')
    p.add_argument('--other-psk', action='append', default=[], metavar='IDENTITY:HEX',
                   help='another key (same hash): a client offers it before --identity\'s; repeatable')
    p.add_argument('--padding', type=int, default=0, help='zero bytes of padding in every protected record')
    p.add_argument('--timeout', type=float, default=20.0, help='seconds for each socket operation')
    args = p.parse_args()
    try:
        (run_client if args.role == 'client' else run_server)(args)
    except TLSLocalAlert as e:
        emit({'event': 'error', 'kind': 'TLSLocalAlert', 'direction': 'sent',
              'alert': AlertDescription.toStr(e.description), 'message': str(e)})
        return 1
    except TLSRemoteAlert as e:
        emit({'event': 'error', 'kind': 'TLSRemoteAlert', 'direction': 'received',
              'alert': AlertDescription.toStr(e.description), 'message': str(e)})
        return 1
    except Exception as e:  # a timeout, a reset, a wrong echo
        emit({'event': 'error', 'kind': type(e).__name__, 'direction': None, 'alert': None, 'message': str(e)})
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
