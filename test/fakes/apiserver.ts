// A fake Kubernetes API server: list and watch over HTTP the way kube-apiserver serves them, for
// the real @kubernetes/client-node to talk to through a kubeconfig.
//
//   GET /api/v1/namespaces/{ns}/pods, /api/v1/pods
//   GET /apis/{group}/{version}/namespaces/{ns}/{plural}, /apis/{group}/{version}/{plural}
//     list:  {"kind":"<Kind>List","apiVersion":...,"metadata":{"resourceVersion":"N"},"items":[...]}
//     ?watch=true&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=S
//            a chunked stream of JSON lines {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":...}
//   GET /apis/{group}/{version}: the APIResourceList of the served resources of that version (404
//     when it serves none), as discovery reads it; GET /apis: the APIGroupList.
//   labelSelector (k=v, k==v, k!=v, k, !k; comma = and) and fieldSelector (metadata.name,
//   metadata.namespace; = == !=) filter lists and watches; on a filtered watch an object that
//   stops matching arrives as DELETED and one that starts matching as ADDED, as the apiserver does.
//
// One resourceVersion counter for all objects (etcd's revision). Watch semantics:
//   - resourceVersion "" or "0": synthetic ADDED for every current object, then live events;
//   - resourceVersion N >= the compaction point: the retained events after N, then live;
//   - N older than the compaction point: one ERROR event with a Status 410 (Expired), then the
//     stream ends (the client must relist).
// Test controls: apply/remove objects, serve or stop serving a resource (a CRD installed or not),
// end watches cleanly (dropWatches), cut their connections (breakWatches), compact history,
// fail the next requests with a status, and a request log.

import http from "node:http";
import type { AddressInfo } from "node:net";

export interface Obj {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; creationTimestamp?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

interface ResourceDef {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

interface StoredEvent {
  rv: number;
  type: "ADDED" | "MODIFIED" | "DELETED";
  res: string;
  prev?: Obj;
  obj: Obj;
}

interface Watcher {
  res: string;
  namespace?: string;
  labelSel: Matcher;
  fieldSel: Matcher;
  resp: http.ServerResponse;
  def: ResourceDef;
  bookmarkTimer?: NodeJS.Timeout;
  endTimer?: NodeJS.Timeout;
}

type Matcher = (o: Obj) => boolean;

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  watch: boolean;
}

export const BUILTIN_RESOURCES: ResourceDef[] = [
  { group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true },
  { group: "inference.networking.x-k8s.io", version: "v1alpha2", plural: "inferencepools", kind: "InferencePool", namespaced: true },
  { group: "inference.networking.x-k8s.io", version: "v1alpha2", plural: "inferencemodels", kind: "InferenceModel", namespaced: true },
  { group: "inferenceextension.alibabacloud.com", version: "v1alpha1", plural: "inferencetrafficpolicies", kind: "InferenceTrafficPolicy", namespaced: true },
  { group: "inference.networking.k8s.io", version: "v1", plural: "inferencepools", kind: "InferencePool", namespaced: true },
  { group: "inference.networking.x-k8s.io", version: "v1alpha2", plural: "inferenceobjectives", kind: "InferenceObjective", namespaced: true },
  { group: "inference.networking.x-k8s.io", version: "v1alpha2", plural: "inferencemodelrewrites", kind: "InferenceModelRewrite", namespaced: true },
];

// A resource named by its plural ("inferencepools": in every group) or plural.group.
function named(d: ResourceDef, name: string): boolean {
  return name === d.plural || name === `${d.plural}.${d.group}`;
}

function resKey(group: string, plural: string): string {
  return `${group}/${plural}`;
}

export class FakeApiServer {
  url = "";
  rv = 100;
  compactedRv = 0;
  bookmarkIntervalMs = 0; // 0: no bookmarks
  readonly requests: RequestRecord[] = [];
  private readonly defs = new Map<string, ResourceDef>();
  private readonly served = new Set<string>();
  private readonly objects = new Map<string, Map<string, Obj>>();
  private readonly events: StoredEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly failures: Array<{ match: (r: RequestRecord) => boolean; status: number; times: number }> = [];
  private server?: http.Server;
  private uidSeq = 0;

  static async start(opts: { serve?: string[]; bookmarkIntervalMs?: number } = {}): Promise<FakeApiServer> {
    const s = new FakeApiServer();
    for (const d of BUILTIN_RESOURCES) s.defs.set(resKey(d.group, d.plural), d);
    for (const d of BUILTIN_RESOURCES) if (!opts.serve || opts.serve.some((n) => named(d, n))) s.served.add(resKey(d.group, d.plural));
    s.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 0;
    await s.listen();
    return s;
  }

  // The kubeconfig YAML pointing at this server. @kubernetes/client-node refuses a plain-http
  // server unless insecure-skip-tls-verify is set.
  kubeconfigYaml(): string {
    return [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: fake",
      "  cluster:",
      `    server: ${this.url}`,
      "    insecure-skip-tls-verify: true",
      "users:",
      "- name: tester",
      "  user:",
      "    token: fake-token",
      "contexts:",
      "- name: fake",
      "  context:",
      "    cluster: fake",
      "    user: tester",
      "current-context: fake",
      "",
    ].join("\n");
  }

  // Serves (a CRD is installed) or stops serving (404) a resource, by plural (every group's) or
  // plural.group.
  serve(name: string, on = true): void {
    const defs = [...this.defs.values()].filter((d) => named(d, name));
    if (defs.length === 0) throw new Error(`unknown resource ${name}`);
    for (const def of defs) {
      if (on) this.served.add(resKey(def.group, def.plural));
      else this.served.delete(resKey(def.group, def.plural));
    }
  }

  // Creates or replaces an object (by apiVersion, kind, namespace, name).
  apply(input: Obj): Obj {
    const def = this.defFor(input);
    const key = resKey(def.group, def.plural);
    const store = this.store(key);
    const id = `${input.metadata.namespace ?? "default"}/${input.metadata.name}`;
    const prev = store.get(id);
    const obj: Obj = structuredClone(input);
    obj.apiVersion = def.group ? `${def.group}/${def.version}` : def.version;
    obj.kind = def.kind;
    obj.metadata.namespace = input.metadata.namespace ?? "default";
    obj.metadata.uid = prev?.metadata.uid ?? `uid-${++this.uidSeq}`;
    obj.metadata.creationTimestamp = input.metadata.creationTimestamp ?? prev?.metadata.creationTimestamp ?? new Date(Date.UTC(2025, 10, 20, 10, 0, this.uidSeq)).toISOString();
    obj.metadata.resourceVersion = String(++this.rv);
    store.set(id, obj);
    this.emit({ rv: this.rv, type: prev ? "MODIFIED" : "ADDED", res: key, prev, obj });
    return obj;
  }

  // `kind` may be "group/Kind" where two groups share the kind (InferencePool).
  remove(kind: string, namespace: string, name: string): boolean {
    const def = this.defOfKind(kind);
    if (!def) throw new Error(`unknown kind ${kind}`);
    const key = resKey(def.group, def.plural);
    const store = this.store(key);
    const id = `${namespace}/${name}`;
    const prev = store.get(id);
    if (!prev) return false;
    store.delete(id);
    const obj = structuredClone(prev);
    obj.metadata.resourceVersion = String(++this.rv);
    this.emit({ rv: this.rv, type: "DELETED", res: key, prev, obj });
    return true;
  }

  get(kind: string, namespace: string, name: string): Obj | undefined {
    const def = this.defOfKind(kind);
    return def ? this.store(resKey(def.group, def.plural)).get(`${namespace}/${name}`) : undefined;
  }

  // Ends every open watch cleanly (the client re-watches from its last resourceVersion).
  dropWatches(): void {
    for (const w of [...this.watchers]) this.endWatch(w);
  }

  // Cuts every watch connection (the client sees an error).
  breakWatches(): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      clearInterval(w.bookmarkTimer);
      clearTimeout(w.endTimer);
      w.resp.socket?.destroy();
    }
  }

  // Forgets the event history: watches from an older resourceVersion get 410 Gone.
  compact(): void {
    this.compactedRv = this.rv;
    this.events.length = 0;
  }

  // The next `times` requests for which `match` holds are answered with `status`.
  failNext(match: (r: RequestRecord) => boolean, status: number, times = 1): void {
    this.failures.push({ match, status, times });
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  watchesOf(plural: string): RequestRecord[] {
    return this.requests.filter((r) => r.watch && r.path.endsWith(`/${plural}`));
  }

  async close(): Promise<void> {
    this.breakWatches();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private async listen(): Promise<void> {
    const server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  private store(key: string): Map<string, Obj> {
    let s = this.objects.get(key);
    if (!s) {
      s = new Map();
      this.objects.set(key, s);
    }
    return s;
  }

  // Discovery: the groups with a served resource, each with its one version.
  private groupList(res: http.ServerResponse): void {
    const groups = new Map<string, string>();
    for (const d of this.defs.values()) if (d.group !== "" && this.served.has(resKey(d.group, d.plural))) groups.set(d.group, d.version);
    const v = (g: string, ver: string) => ({ groupVersion: `${g}/${ver}`, version: ver });
    const body = { kind: "APIGroupList", apiVersion: "v1", groups: [...groups].map(([g, ver]) => ({ name: g, versions: [v(g, ver)], preferredVersion: v(g, ver) })) };
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  }

  private resourceList(res: http.ServerResponse, group: string, version: string): void {
    const defs = [...this.defs.values()].filter((d) => d.group === group && d.version === version && this.served.has(resKey(d.group, d.plural)));
    if (defs.length === 0) return this.status(res, 404, "NotFound", `the server could not find the requested resource (${group}/${version})`);
    const body = {
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion: `${group}/${version}`,
      resources: defs.flatMap((d) => [
        { name: d.plural, singularName: d.kind.toLowerCase(), namespaced: d.namespaced, kind: d.kind, verbs: ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"] },
        { name: `${d.plural}/status`, singularName: "", namespaced: d.namespaced, kind: d.kind, verbs: ["get", "patch", "update"] },
      ]),
    };
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  }

  private defOfKind(kind: string): ResourceDef | undefined {
    const slash = kind.lastIndexOf("/");
    if (slash < 0) return [...this.defs.values()].find((d) => d.kind === kind);
    const group = kind.slice(0, slash);
    return [...this.defs.values()].find((d) => d.kind === kind.slice(slash + 1) && d.group === group);
  }

  private defFor(o: Obj): ResourceDef {
    const group = o.apiVersion?.includes("/") ? o.apiVersion.split("/")[0] : "";
    const def = [...this.defs.values()].find((d) => d.kind === o.kind && d.group === group);
    if (!def) throw new Error(`unknown kind ${o.apiVersion}/${o.kind}`);
    return def;
  }

  private emit(ev: StoredEvent): void {
    this.events.push(ev);
    for (const w of this.watchers) this.deliver(w, ev);
  }

  private deliver(w: Watcher, ev: StoredEvent): void {
    if (w.res !== ev.res) return;
    const inScope = (o: Obj | undefined) => o !== undefined && (w.namespace === undefined || o.metadata.namespace === w.namespace) && w.labelSel(o) && w.fieldSel(o);
    const was = inScope(ev.prev);
    const is = ev.type !== "DELETED" && inScope(ev.obj);
    let type: string | undefined;
    if (ev.type === "DELETED") type = was ? "DELETED" : undefined;
    else if (was && is) type = "MODIFIED";
    else if (!was && is) type = "ADDED";
    else if (was && !is) type = "DELETED";
    if (type) this.send(w, { type, object: ev.obj });
  }

  private send(w: Watcher, event: unknown): void {
    if (!w.resp.writableEnded && !w.resp.destroyed) w.resp.write(JSON.stringify(event) + "\n");
  }

  private endWatch(w: Watcher): void {
    this.watchers.delete(w);
    clearInterval(w.bookmarkTimer);
    clearTimeout(w.endTimer);
    if (!w.resp.writableEnded) w.resp.end();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://fake");
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const watch = query.watch === "true" || query.watch === "1";
    const record: RequestRecord = { method: req.method ?? "GET", path: url.pathname, query, watch };
    this.requests.push(record);

    const failure = this.failures.find((f) => f.times > 0 && f.match(record));
    if (failure) {
      failure.times--;
      return this.status(res, failure.status, failure.status === 500 ? "InternalError" : "Injected", "injected failure");
    }
    if (req.method !== "GET") return this.status(res, 405, "MethodNotAllowed", "only GET is implemented");

    if (url.pathname === "/apis" || url.pathname === "/apis/") return this.groupList(res);
    const gv = /^\/apis\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname);
    if (gv) return this.resourceList(res, gv[1], gv[2]);
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)$/.exec(url.pathname);
    if (!m) return this.status(res, 404, "NotFound", `the server could not find the requested resource (${url.pathname})`);
    const group = m[2] ?? "";
    const version = m[1] ?? m[3];
    const namespace = m[4] ? decodeURIComponent(m[4]) : undefined;
    const plural = m[5];
    const key = resKey(group, plural);
    const def = this.defs.get(key);
    if (!def || def.version !== version || !this.served.has(key)) {
      return this.status(res, 404, "NotFound", `the server could not find the requested resource (get ${plural}${group ? "." + group : ""})`);
    }
    let labelSel: Matcher;
    let fieldSel: Matcher;
    try {
      labelSel = parseLabelSelector(query.labelSelector ?? "");
      fieldSel = parseFieldSelector(query.fieldSelector ?? "");
    } catch (err) {
      return this.status(res, 400, "BadRequest", (err as Error).message);
    }
    const matching = () => [...this.store(key).values()].filter((o) => (namespace === undefined || o.metadata.namespace === namespace) && labelSel(o) && fieldSel(o));

    if (!watch) {
      const body = {
        kind: `${def.kind}List`,
        apiVersion: group ? `${group}/${def.version}` : def.version,
        metadata: { resourceVersion: String(this.rv) },
        items: matching().sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1)),
      };
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      return;
    }

    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    res.flushHeaders();
    const w: Watcher = { res: key, namespace, labelSel, fieldSel, resp: res, def };
    const fromText = query.resourceVersion ?? "";
    if (fromText === "" || fromText === "0") {
      for (const o of matching()) this.send(w, { type: "ADDED", object: o });
    } else {
      const from = Number(fromText);
      if (!Number.isFinite(from) || from < this.compactedRv) {
        this.send(w, {
          type: "ERROR",
          object: { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `too old resource version: ${fromText} (${this.compactedRv})`, reason: "Expired", code: 410 },
        });
        res.end();
        return;
      }
      for (const ev of this.events) if (ev.rv > from) this.deliver(w, ev);
    }
    this.watchers.add(w);
    res.on("close", () => {
      this.watchers.delete(w);
      clearInterval(w.bookmarkTimer);
      clearTimeout(w.endTimer);
    });
    if (query.allowWatchBookmarks === "true" && this.bookmarkIntervalMs > 0) {
      w.bookmarkTimer = setInterval(() => {
        this.send(w, { type: "BOOKMARK", object: { kind: def.kind, apiVersion: group ? `${group}/${def.version}` : def.version, metadata: { resourceVersion: String(this.rv) } } });
      }, this.bookmarkIntervalMs);
    }
    const timeout = Number(query.timeoutSeconds);
    if (Number.isFinite(timeout) && timeout > 0) w.endTimer = setTimeout(() => this.endWatch(w), timeout * 1000);
  }

  private status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }));
  }
}

// Equality-based label selectors: "a=b,c==d,e!=f,g,!h".
export function parseLabelSelector(text: string): Matcher {
  const terms = text.split(",").map((t) => t.trim()).filter((t) => t.length > 0);
  const tests: Matcher[] = terms.map((t) => {
    let m: RegExpExecArray | null;
    if ((m = /^([\w./-]+)\s*!=\s*([\w.-]*)$/.exec(t))) return (o) => o.metadata.labels?.[m![1]] !== m![2];
    if ((m = /^([\w./-]+)\s*==?\s*([\w.-]*)$/.exec(t))) return (o) => o.metadata.labels?.[m![1]] === m![2];
    if ((m = /^!([\w./-]+)$/.exec(t))) return (o) => o.metadata.labels?.[m![1]] === undefined;
    if ((m = /^([\w./-]+)$/.exec(t))) return (o) => o.metadata.labels?.[m![1]] !== undefined;
    throw new Error(`unable to parse requirement: ${t}`);
  });
  return (o) => tests.every((f) => f(o));
}

export function parseFieldSelector(text: string): Matcher {
  const terms = text.split(",").map((t) => t.trim()).filter((t) => t.length > 0);
  const tests: Matcher[] = terms.map((t) => {
    const m = /^(metadata\.name|metadata\.namespace)\s*(!=|==|=)\s*(.*)$/.exec(t);
    if (!m) throw new Error(`field label not supported: ${t}`);
    const get = (o: Obj) => (m[1] === "metadata.name" ? o.metadata.name : o.metadata.namespace);
    return m[2] === "!=" ? (o) => get(o) !== m[3] : (o) => get(o) === m[3];
  });
  return (o) => tests.every((f) => f(o));
}
