/**
 * A minimal pcap writer: turns the bytes of one TCP conversation, as a test saw them, into a classic libpcap
 * file (link type RAW: IPv4 packets) that Wireshark and tshark read like a live capture. Used when the test
 * cannot capture on the loopback interface (no CAP_NET_RAW), so that tshark's decryption with our key-log
 * file is still checked against real qkd-tls records.
 */

/** One chunk of TCP payload and the side that sent it. */
export interface TcpChunk {
  readonly from: 'client' | 'server';
  readonly data: Uint8Array;
}

export interface TcpConversation {
  readonly clientPort: number;
  readonly serverPort: number;
  readonly chunks: readonly TcpChunk[];
}

/** LINKTYPE_RAW: each packet starts with an IPv4 header. */
const LINKTYPE_RAW = 101;
const MSS = 1460;
const LOOPBACK = [127, 0, 0, 1];
const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;

/**
 * Encodes the conversation as a pcap file: the three-way handshake, the payload in segments of at most
 * 1460 bytes with consistent sequence numbers, and a FIN from each side. Packets are 1 ms apart.
 */
export function tcpConversationPcap(conv: TcpConversation): Buffer {
  const packets: Buffer[] = [];
  const c = { port: conv.clientPort, seq: 0x1000_0000, peerPort: conv.serverPort };
  const s = { port: conv.serverPort, seq: 0x2000_0000, peerPort: conv.clientPort };
  const send = (from: typeof c, to: typeof c, flags: number, payload: Uint8Array = new Uint8Array(0)): void => {
    packets.push(ipv4Tcp(from.port, to.port, from.seq, flags & TCP_ACK ? to.seq : 0, flags, payload));
    from.seq = (from.seq + payload.length + (flags & (TCP_SYN | TCP_FIN) ? 1 : 0)) >>> 0;
  };
  send(c, s, TCP_SYN);
  send(s, c, TCP_SYN | TCP_ACK);
  send(c, s, TCP_ACK);
  for (const chunk of conv.chunks) {
    const [from, to] = chunk.from === 'client' ? [c, s] : [s, c];
    for (let off = 0; off < chunk.data.length; off += MSS) {
      send(from, to, TCP_PSH | TCP_ACK, chunk.data.subarray(off, off + MSS));
    }
  }
  send(c, s, TCP_FIN | TCP_ACK);
  send(s, c, TCP_FIN | TCP_ACK);
  send(c, s, TCP_ACK);

  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0); // magic: microsecond timestamps
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeInt32LE(0, 8);
  header.writeUInt32LE(0, 12);
  header.writeUInt32LE(65535, 16); // snaplen
  header.writeUInt32LE(LINKTYPE_RAW, 20);
  const records = packets.map((p, i) => {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1_700_000_000 + Math.floor(i / 1000), 0);
    rec.writeUInt32LE((i % 1000) * 1000, 4);
    rec.writeUInt32LE(p.length, 8);
    rec.writeUInt32LE(p.length, 12);
    return Buffer.concat([rec, p]);
  });
  return Buffer.concat([header, ...records]);
}

/** An IPv4 packet from 127.0.0.1 to 127.0.0.1 carrying one TCP segment, with correct checksums. */
function ipv4Tcp(srcPort: number, dstPort: number, seq: number, ack: number, flags: number, payload: Uint8Array): Buffer {
  const tcp = Buffer.alloc(20 + payload.length);
  tcp.writeUInt16BE(srcPort, 0);
  tcp.writeUInt16BE(dstPort, 2);
  tcp.writeUInt32BE(seq >>> 0, 4);
  tcp.writeUInt32BE(ack >>> 0, 8);
  tcp[12] = 5 << 4; // data offset: 5 words
  tcp[13] = flags;
  tcp.writeUInt16BE(65535, 14); // window
  tcp.set(payload, 20);
  const pseudo = Buffer.concat([Buffer.from([...LOOPBACK, ...LOOPBACK, 0, 6]), u16(tcp.length)]);
  tcp.writeUInt16BE(internetChecksum(Buffer.concat([pseudo, tcp])), 16);

  const ip = Buffer.alloc(20);
  ip[0] = 0x45; // version 4, 5-word header
  ip.writeUInt16BE(20 + tcp.length, 2);
  ip.writeUInt16BE(0x4000, 6); // don't fragment
  ip[8] = 64; // TTL
  ip[9] = 6; // TCP
  ip.set(LOOPBACK, 12);
  ip.set(LOOPBACK, 16);
  ip.writeUInt16BE(internetChecksum(ip), 10);
  return Buffer.concat([ip, tcp]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** RFC 1071 one's-complement sum of 16-bit words. */
function internetChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | (i + 1 < b.length ? b[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
