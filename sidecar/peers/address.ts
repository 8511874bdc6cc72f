// Peer addresses: "ip:port", "[ipv6]:port" or "host:port".

export interface Peer {
  id: string; // "ip:port" or "[ipv6]:port": the metrics label and the log field
  host: string;
  port: number;
}

export function peerId(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

// "10.0.0.1:19200", "[fd00::1]:19200", "gw-1.example:19200"; undefined when not ADDR:PORT.
export function parsePeerAddress(text: string): Peer | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  const host = (m[1] ?? m[2]).toLowerCase();
  return { id: peerId(host, port), host, port };
}
