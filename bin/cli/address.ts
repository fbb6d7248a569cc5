/**
 * HOST:PORT as the commands print an address (a "listening" line, a peer): an IPv6 address in brackets, `[::1]:4433`,
 * as --listen, --connect and --allow take it (RFC 3986 §3.2.2) and as the proxy and kme print it. `::1:4433` could
 * not be given back to --connect, and does not say where the address ends.
 */
export function hostPortText(host: string, port: number | string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
