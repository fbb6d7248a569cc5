/**
 * A throwaway self-signed Ed25519 certificate, built at run time, for the one measurement where node:tls
 * cannot use a PSK: TLS_AES_256_GCM_SHA384. OpenSSL's PSK callbacks (the only PSK interface node:tls
 * has) always bind the key to SHA-256, so a SHA-384 suite cannot be negotiated with them; the bulk
 * transfer after the handshake does not depend on how the handshake authenticated, so Node's AES-256-GCM
 * throughput is measured over a certificate handshake instead.
 *
 * The certificate (X.509 v3, RFC 5280 §4.1; Ed25519 per RFC 8410) is valid from one day ago to one day
 * ahead, names "qkd-tls bench", and is used only on loopback with verification off.
 */
import { generateKeyPairSync, sign } from 'node:crypto';

export interface SelfSigned {
  readonly key: string;
  readonly cert: string;
}

export function selfSignedEd25519(now = new Date()): SelfSigned {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const ed25519 = der(0x30, der(0x06, Uint8Array.of(0x2b, 0x65, 0x70))); // id-Ed25519 1.3.101.112, no parameters
  const name = der(0x30, der(0x31, der(0x30, der(0x06, Uint8Array.of(0x55, 0x04, 0x03)), der(0x0c, new TextEncoder().encode('qkd-tls bench')))));
  const day = 86_400_000;
  const validity = der(0x30, der(0x17, utcTime(new Date(now.getTime() - day))), der(0x17, utcTime(new Date(now.getTime() + day))));
  const tbs = der(
    0x30,
    der(0xa0, der(0x02, Uint8Array.of(2))), // version v3
    der(0x02, Uint8Array.of(1)), // serialNumber
    ed25519,
    name,
    validity,
    name,
    new Uint8Array(spki),
  );
  const signature = sign(null, tbs, privateKey);
  const cert = der(0x30, tbs, ed25519, der(0x03, Uint8Array.of(0), new Uint8Array(signature)));
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    cert: pem('CERTIFICATE', cert),
  };
}

/** One DER TLV (X.690 §8.1) with definite length. */
function der(tag: number, ...contents: Uint8Array[]): Uint8Array {
  const length = contents.reduce((n, c) => n + c.length, 0);
  const lenBytes = length < 0x80 ? [length] : length < 0x100 ? [0x81, length] : [0x82, length >>> 8, length & 0xff];
  const out = new Uint8Array(1 + lenBytes.length + length);
  out[0] = tag;
  out.set(lenBytes, 1);
  let at = 1 + lenBytes.length;
  for (const c of contents) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** UTCTime YYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.1). */
function utcTime(d: Date): Uint8Array {
  const two = (n: number) => String(n).padStart(2, '0');
  const s = `${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  return new TextEncoder().encode(s);
}

function pem(label: string, body: Uint8Array): string {
  const b64 = Buffer.from(body).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}
