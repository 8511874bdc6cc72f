// Command-line flags: one table drives parsing, validation and --help.

import { isIP } from "node:net";
import { parseArgs } from "node:util";
import { SidecarError } from "./errors.ts";
import { parsePeerAddress } from "./peers/address.ts";
import { isReplicaName } from "./peers/sections.ts";
import { LEVELS, type Level } from "./observability/log.ts";
import { formatBytes, formatDuration, parseBytes, parseDuration } from "./util/units.ts";

export const DEFAULT_PUSH_URL = "http://127.0.0.1:19100/wasm-epp/v1/state";
export const TOKEN_ENV = "WASM_EPP_PUSH_TOKEN";
export const POD_IP_ENV = "POD_IP";
export const POD_NAME_ENV = "POD_NAME";
export const DEFAULT_PEER_PORT = 19200;

export interface Options {
  manifests?: string;
  kubeconfig?: string;
  namespace?: string;
  pools: string[];
  scrapeIntervalMs: number;
  scrapeJitter: number;
  scrapeTimeoutMs: number;
  scrapeConcurrency: number;
  scrapeMaxBytes: number;
  scrapeNameFilter: boolean;
  unreachableAfter: number;
  metricsStaleMs: number;
  pushUrls: string[];
  pushTokenFile?: string;
  pushIntervalMs: number;
  pushCoalesceMs: number;
  pushTimeoutMs: number;
  metricsPort: number;
  metricsAddress: string;
  peers: string[];
  peerService?: string;
  peerSelector?: string;
  peerNamespace?: string;
  peerDiscoveryPort?: string;
  podIp?: string;
  replicaName?: string;
  peerPort: number;
  peerAddress: string;
  peerTokenFile?: string;
  peerIntervalMs: number;
  peerMaxBytes: number;
  peerTimeoutMs: number;
  peerStoreBytes: number;
  peerTtlMs: number;
  peerWarmupTimeoutMs: number;
  logLevel: Level;
  help: boolean;
  version: boolean;
}

type Kind = "string" | "duration" | "bytes" | "int" | "ratio" | "boolean";

interface Flag {
  name: string;
  key: keyof Options;
  kind: Kind;
  multiple?: boolean;
  value?: string; // placeholder in --help
  default?: number | string;
  min?: number;
  max?: number;
  help: string;
}

const FLAGS: Flag[] = [
  { name: "manifests", key: "manifests", kind: "string", value: "DIR",
    help: "File mode: read InferencePools, InferenceModels, InferenceTrafficPolicies and Pods from the *.yaml/*.yml files directly in DIR (multi-document; subdirectories are not read) and re-read them when they change. Without this flag the sidecar watches the Kubernetes API." },
  { name: "kubeconfig", key: "kubeconfig", kind: "string", value: "PATH",
    help: "Kubernetes mode: client configuration file. Default: the in-cluster service account when running in a pod, else $KUBECONFIG or ~/.kube/config." },
  { name: "namespace", key: "namespace", kind: "string", value: "NS",
    help: "Kubernetes mode: watch only this namespace (default: the namespaces of --pool, or all namespaces). File mode: the namespace of objects that name none (default: default)." },
  { name: "pool", key: "pools", kind: "string", multiple: true, value: "NS/NAME",
    help: "Serve only this InferencePool. Default: every pool found." },
  { name: "scrape-interval", key: "scrapeIntervalMs", kind: "duration", default: 100, min: 10, max: 60_000,
    help: "Time between two scrapes of one pod's /metrics, before jitter." },
  { name: "scrape-jitter", key: "scrapeJitter", kind: "ratio", default: 0.5, min: 0, max: 0.9,
    help: "Each interval is shortened by a random fraction up to this much (0.5 with 100ms: every 50-100ms), so scrapes of many pods spread out." },
  { name: "scrape-timeout", key: "scrapeTimeoutMs", kind: "duration", default: 500, min: 10, max: 60_000,
    help: "Deadline for one scrape: connect, headers and body." },
  { name: "scrape-concurrency", key: "scrapeConcurrency", kind: "int", default: 64, min: 1, max: 10_000,
    help: "Scrapes in flight at once, over all pods." },
  { name: "scrape-max-bytes", key: "scrapeMaxBytes", kind: "bytes", default: 4 * 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024,
    help: "Largest exposition read from one pod; a larger one is dropped (scrape_too_large) and the pod keeps its last values." },
  { name: "scrape-name-filter", key: "scrapeNameFilter", kind: "string", default: "on", value: "on|off",
    help: "Ask each model server for only the series the sidecar reads (/metrics?name[]=..., honoured by prometheus_client's exposition app); a server that ignores it sends the whole page, one that answers without the series is scraped unfiltered from then on. A pool's annotation wasm-epp.io/scrape-name-filter (on or off) overrides it." },
  { name: "unreachable-after", key: "unreachableAfter", kind: "int", default: 2, min: 1, max: 1000,
    help: "A pod whose metrics endpoint refuses connections or times out this many times in a row is published with ready=false until a scrape succeeds." },
  { name: "metrics-stale", key: "metricsStaleMs", kind: "duration", default: 1000, min: 10, max: 3_600_000,
    help: "Metrics age at which an endpoint's score reaches 0; the score starts to fall at a quarter of it. Match the filter's saturation.metrics_stale_ms." },
  { name: "push-url", key: "pushUrls", kind: "string", multiple: true, value: "URL",
    help: `Envoy push listener to send the state document to. Default: ${DEFAULT_PUSH_URL}.` },
  { name: "push-token-file", key: "pushTokenFile", kind: "string", value: "PATH",
    help: `File holding the push bearer token (re-read after a 401). Default: the ${TOKEN_ENV} environment variable. One of the two is required.` },
  { name: "push-interval", key: "pushIntervalMs", kind: "duration", default: 1000, min: 10, max: 3_600_000,
    help: "Push at least this often even when nothing changed, so the filter's state never looks stale." },
  { name: "push-coalesce", key: "pushCoalesceMs", kind: "duration", default: 20, min: 0, max: 60_000,
    help: "Least time between two state documents. A change after a quiet period is pushed at once; changes arriving sooner are pushed together when this time has passed. 0: no bound." },
  { name: "push-timeout", key: "pushTimeoutMs", kind: "duration", default: 2000, min: 10, max: 600_000,
    help: "Deadline for one push." },
  { name: "metrics-port", key: "metricsPort", kind: "int", default: 9090, min: 0, max: 65535,
    help: "Port for /metrics, /healthz and /readyz (0: any free port, logged at start)." },
  { name: "metrics-address", key: "metricsAddress", kind: "string", default: "0.0.0.0", value: "ADDR",
    help: "Address the metrics port binds." },
  { name: "peer", key: "peers", kind: "string", multiple: true, value: "ADDR:PORT",
    help: "Share prefix-index records with the gateway replica whose sidecar's peer port is ADDR:PORT (ip, [ipv6] or host name). Either this or --peer-service / --peer-selector turns peer sharing on; the other --peer-* flags take effect only then." },
  { name: "peer-service", key: "peerService", kind: "string", value: "NAME",
    help: "Kubernetes mode: the peers are the endpoints of the gateway Service NAME in --peer-namespace, from its EndpointSlices (label kubernetes.io/service-name=NAME), followed as replicas come and go; this pod is left out." },
  { name: "peer-selector", key: "peerSelector", kind: "string", value: "SELECTOR",
    help: "Kubernetes mode: like --peer-service, choosing the EndpointSlices by this label selector instead (slices carry their Service's labels; Envoy Gateway's Services are named with a hash but labelled gateway.envoyproxy.io/owning-gateway-name and -namespace)." },
  { name: "peer-namespace", key: "peerNamespace", kind: "string", value: "NS",
    help: "Namespace of the gateway Service for --peer-service / --peer-selector. Default: this pod's namespace (POD_NAMESPACE, else the service account's namespace file)." },
  { name: "peer-discovery-port", key: "peerDiscoveryPort", kind: "string", value: "PORT|NAME",
    help: "Port of the discovered peers: a number, or the name of a port of the Service. Default: --peer-port, the same on every replica." },
  { name: "pod-ip", key: "podIp", kind: "string", value: "ADDR",
    help: `This pod's address, left out of the discovered peers. Default: $${POD_IP_ENV}; the addresses of this host's interfaces are always left out.` },
  { name: "replica-name", key: "replicaName", kind: "string", value: "NAME",
    help: `This replica's name in the loads it sends its peers (1 to 253 printable ASCII characters); each replica needs its own. Default: $${POD_NAME_ENV}, else the host name.` },
  { name: "peer-port", key: "peerPort", kind: "int", default: DEFAULT_PEER_PORT, min: 0, max: 65535,
    help: "Port where peers send records and loads and fetch snapshots (0: any free port, logged at start)." },
  { name: "peer-address", key: "peerAddress", kind: "string", default: "0.0.0.0", value: "ADDR",
    help: "Address the peer port binds. Peers must reach it; restrict who can with a NetworkPolicy." },
  { name: "peer-token-file", key: "peerTokenFile", kind: "string", value: "PATH",
    help: "File holding the bearer token every replica presents to its peers and checks on their requests (one shared Secret). Required with a peer source." },
  { name: "peer-interval", key: "peerIntervalMs", kind: "duration", default: 100, min: 10, max: 60_000,
    help: "Time between two requests to the own filter's share endpoint (new prefix records and this replica's loads), between two sends to one peer, and between two posts of peers' records and loads into the filter." },
  { name: "peer-max-bytes", key: "peerMaxBytes", kind: "bytes", default: 1024 * 1024, min: 1024, max: 64 * 1024 * 1024,
    help: "Largest body (prefix records and loads) sent to a peer, accepted from one (413 beyond) or posted into the own filter; at most the filter's peers.max_import_bytes." },
  { name: "peer-timeout", key: "peerTimeoutMs", kind: "duration", default: 1000, min: 10, max: 60_000,
    help: "Deadline for one request to a peer or to the own filter's share endpoint." },
  { name: "peer-store-bytes", key: "peerStoreBytes", kind: "bytes", default: 64 * 1024 * 1024, min: 64 * 1024, max: 4 * 1024 * 1024 * 1024,
    help: "Records kept for peers' snapshots (exported and received), the oldest dropped beyond this." },
  { name: "peer-ttl", key: "peerTtlMs", kind: "duration", default: 600_000, min: 1000, max: 86_400_000,
    help: "Age at which a kept record is dropped. Match the filter's prefix.ttl_ms." },
  { name: "peer-warmup-timeout", key: "peerWarmupTimeoutMs", kind: "duration", default: 5000, min: 0, max: 600_000,
    help: "At start, time allowed to fetch one peer's snapshot and post it into the filter before reporting ready (0: no warm-up)." },
  { name: "log-level", key: "logLevel", kind: "string", default: "info", value: LEVELS.join("|"),
    help: "Least severe level logged (JSON lines on stderr)." },
  { name: "help", key: "help", kind: "boolean", help: "Print this help and exit." },
  { name: "version", key: "version", kind: "boolean", help: "Print the version and exit." },
];

export function flagNames(): string[] {
  return FLAGS.map((f) => f.name);
}

export function parseOptions(argv: string[]): Options {
  const spec: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {};
  for (const f of FLAGS) spec[f.name] = f.multiple ? { type: "string", multiple: true } : { type: f.kind === "boolean" ? "boolean" : "string" };
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: spec, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new SidecarError("usage", (err as Error).message);
  }
  const out: Record<string, unknown> = { pools: [], pushUrls: [], peers: [], help: false, version: false };
  for (const f of FLAGS) {
    const raw = values[f.name];
    if (raw === undefined) {
      if (f.default !== undefined) out[f.key] = f.default;
      continue;
    }
    if (f.kind === "boolean") {
      out[f.key] = raw === true;
      continue;
    }
    const texts = (Array.isArray(raw) ? raw : [raw]).map(String);
    const parsed = texts.map((t) => convert(f, t));
    out[f.key] = f.multiple ? parsed : parsed[parsed.length - 1];
  }
  const o = out as unknown as Options;
  if (!LEVELS.includes(o.logLevel)) throw new SidecarError("usage", `--log-level must be one of ${LEVELS.join(", ")}`);
  const filter = String(o.scrapeNameFilter);
  if (filter !== "on" && filter !== "off") throw new SidecarError("usage", "--scrape-name-filter must be on or off");
  o.scrapeNameFilter = filter === "on";
  for (const p of o.pools) {
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(p)) {
      throw new SidecarError("usage", `--pool ${p}: must be namespace/name`);
    }
  }
  for (const u of o.pushUrls) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new SidecarError("usage", `--push-url ${u}: not a URL`);
    }
    if (url.protocol !== "http:") throw new SidecarError("usage", `--push-url ${u}: only http:// is supported (the push listener is on loopback)`);
  }
  if (o.pushUrls.length === 0) o.pushUrls = [DEFAULT_PUSH_URL];
  if (o.manifests !== undefined && o.kubeconfig !== undefined) {
    throw new SidecarError("usage", "--manifests and --kubeconfig exclude each other");
  }
  if (o.scrapeTimeoutMs > 60_000) throw new SidecarError("usage", "--scrape-timeout is too long");
  validatePeerOptions(o);
  return o;
}

// Peer sharing is on when a peer source is configured.
export function peerSharing(o: Options): boolean {
  return o.peers.length > 0 || o.peerService !== undefined || o.peerSelector !== undefined;
}

function validatePeerOptions(o: Options): void {
  for (const p of o.peers) {
    if (!parsePeerAddress(p)) throw new SidecarError("usage", `--peer ${p}: must be ADDR:PORT (ip, [ipv6] or host name, port 1-65535)`);
  }
  if (o.peerService !== undefined && !/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(o.peerService)) {
    throw new SidecarError("usage", `--peer-service ${o.peerService}: not a Service name`);
  }
  if (o.peerSelector !== undefined) {
    for (const term of o.peerSelector.split(",")) {
      if (!/^\s*(!?[A-Za-z0-9][-A-Za-z0-9_./]*|[A-Za-z0-9][-A-Za-z0-9_./]*\s*(=|==|!=)\s*[-A-Za-z0-9_.]*)\s*$/.test(term)) {
        throw new SidecarError("usage", `--peer-selector ${o.peerSelector}: "${term}" is not a label requirement (key=value, key!=value, key, !key)`);
      }
    }
  }
  if (o.peerService !== undefined && o.peerSelector !== undefined) throw new SidecarError("usage", "--peer-service and --peer-selector exclude each other");
  const discovery = o.peerService !== undefined || o.peerSelector !== undefined;
  if (discovery && o.manifests !== undefined) throw new SidecarError("usage", "--peer-service / --peer-selector need Kubernetes mode (without --manifests); use --peer ADDR:PORT in file mode");
  if (o.peerDiscoveryPort !== undefined) {
    const n = /^\d+$/.test(o.peerDiscoveryPort) ? Number(o.peerDiscoveryPort) : undefined;
    if (n !== undefined ? n < 1 || n > 65535 : !/^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/.test(o.peerDiscoveryPort)) {
      throw new SidecarError("usage", `--peer-discovery-port ${o.peerDiscoveryPort}: must be a port number or a port name`);
    }
  }
  if (o.replicaName !== undefined && !isReplicaName(o.replicaName)) throw new SidecarError("usage", `--replica-name ${o.replicaName}: must be 1 to 253 printable ASCII characters, no space`);
  if (o.podIp !== undefined && isIP(o.podIp) === 0) throw new SidecarError("usage", `--pod-ip ${o.podIp}: not an IP address`);
  if (peerSharing(o)) {
    if (o.peerTokenFile === undefined) throw new SidecarError("usage", "peer sharing (--peer, --peer-service or --peer-selector) needs --peer-token-file");
    if (o.peerPort !== 0 && o.peerPort === o.metricsPort) throw new SidecarError("usage", `--peer-port and --metrics-port are both ${o.peerPort}`);
  }
}

function convert(f: Flag, text: string): string | number {
  let n: number | undefined;
  switch (f.kind) {
    case "string":
      if (text.length === 0) throw new SidecarError("usage", `--${f.name} needs a value`);
      return text;
    case "duration":
      n = parseDuration(text);
      if (n === undefined) throw new SidecarError("usage", `--${f.name} ${text}: not a duration (e.g. 250ms, 2s)`);
      break;
    case "bytes":
      n = parseBytes(text);
      if (n === undefined) throw new SidecarError("usage", `--${f.name} ${text}: not a size (e.g. 4MiB)`);
      break;
    case "int":
      n = /^\d+$/.test(text) ? Number(text) : undefined;
      if (n === undefined) throw new SidecarError("usage", `--${f.name} ${text}: not a whole number`);
      break;
    case "ratio":
      n = /^\d*\.?\d+$/.test(text) ? Number(text) : undefined;
      if (n === undefined) throw new SidecarError("usage", `--${f.name} ${text}: not a number`);
      break;
    default:
      return text;
  }
  if ((f.min !== undefined && n < f.min) || (f.max !== undefined && n > f.max)) {
    throw new SidecarError("usage", `--${f.name} ${text}: must be between ${show(f, f.min!)} and ${show(f, f.max!)}`);
  }
  return n;
}

function show(f: Flag, n: number): string {
  if (f.kind === "duration") return formatDuration(n);
  if (f.kind === "bytes") return formatBytes(n);
  return String(n);
}

export function helpText(version: string): string {
  const lines = [
    `wasm-epp sidecar ${version}`,
    "",
    "Watches InferencePools, InferenceModels and their Pods, scrapes every model server's",
    "/metrics, scores the endpoints and pushes the routing state to the wasm-epp filter in Envoy.",
    "With a peer source it also shares the filter's prefix-index records and its load (what it",
    "has in flight to each pod) with the other gateway replicas' sidecars.",
    "",
    "Usage: node build/sidecar.js [flags]",
    "",
    "Flags:",
  ];
  for (const f of FLAGS) {
    let head = `  --${f.name}`;
    if (f.kind !== "boolean") head += ` ${f.value ?? kindPlaceholder(f.kind)}`;
    if (f.multiple) head += " (repeatable)";
    // A no-break space keeps "(default X)" on one line.
    const dflt = f.default === undefined ? "" : ` (default\u00a0${typeof f.default === "string" ? f.default : show(f, f.default)})`;
    lines.push(head);
    for (const l of wrap(f.help + dflt, 74)) {
      lines.push(`      ${l.replace(/\u00a0/g, " ")}`);
    }
  }
  lines.push(
    "",
    "Environment:",
    `  ${TOKEN_ENV}   push bearer token when --push-token-file is not given`,
    `  ${POD_IP_ENV}                this pod's address when --pod-ip is not given (peer discovery)`,
    `  ${POD_NAME_ENV}              this replica's name when --replica-name is not given`,
    "  POD_NAMESPACE         the default --peer-namespace",
    "",
    "Logs are JSON lines on stderr. Exit status: 0 after SIGTERM/SIGINT, 1 on a start-up",
    "error (token, kubeconfig, manifests, listener), 2 on a usage error.",
    "",
  );
  return lines.join("\n");
}

function kindPlaceholder(kind: Kind): string {
  switch (kind) {
    case "duration":
      return "DURATION";
    case "bytes":
      return "SIZE";
    case "int":
      return "N";
    case "ratio":
      return "FRACTION";
    default:
      return "VALUE";
  }
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(/[ \t\n]+/)) {
    if (line.length > 0 && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else {
      line = line.length > 0 ? `${line} ${word}` : word;
    }
  }
  if (line.length > 0) out.push(line);
  return out;
}
