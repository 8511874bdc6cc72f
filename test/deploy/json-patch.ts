// JSON Patch (RFC 6902: add, remove, replace) and the JSONPath subset EnvoyPatchPolicy examples use,
// applied the way Envoy Gateway applies an EnvoyPatchPolicy operation: the jsonPath selects nodes,
// `path` is appended to each match, and `add` creates missing parent objects.
//
// JSONPath supported: `$`, `.name`, `..name` (any depth), `[n]`, `[*]`, and filters
// `[?(@.a.b == 'text')]` / `[?(@.a == true)]`. Anything else throws, so a new expression in a
// deployment file cannot pass unchecked.

export type Op = { op: "add" | "remove" | "replace"; path?: string; jsonPath?: string; value?: unknown };

type Seg = { kind: "child"; name: string } | { kind: "deep"; name: string } | { kind: "index"; index: number } | { kind: "all" } | { kind: "filter"; path: string[]; value: unknown };

export function parseJsonPath(expr: string): Seg[] {
  let s = expr.trim();
  if (s.startsWith("$")) s = s.slice(1);
  else if (!s.startsWith(".") && !s.startsWith("[")) s = "." + s; // Envoy Gateway also takes paths without "$"
  const segs: Seg[] = [];
  const name = /^[A-Za-z_@][A-Za-z0-9_@-]*/;
  while (s.length > 0) {
    let m: RegExpMatchArray | null;
    if (s.startsWith("..")) {
      m = s.slice(2).match(name);
      if (!m) throw new Error(`unsupported JSONPath near "${s}" in ${expr}`);
      segs.push({ kind: "deep", name: m[0] });
      s = s.slice(2 + m[0].length);
    } else if (s.startsWith(".")) {
      m = s.slice(1).match(name);
      if (!m) throw new Error(`unsupported JSONPath near "${s}" in ${expr}`);
      segs.push({ kind: "child", name: m[0] });
      s = s.slice(1 + m[0].length);
    } else if ((m = s.match(/^\[(\d+)\]/))) {
      segs.push({ kind: "index", index: Number(m[1]) });
      s = s.slice(m[0].length);
    } else if ((m = s.match(/^\[\*\]/))) {
      segs.push({ kind: "all" });
      s = s.slice(m[0].length);
    } else if ((m = s.match(/^\[\?\(\s*@((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*==\s*(?:'([^']*)'|"([^"]*)"|(true|false|-?\d+(?:\.\d+)?))\s*\)\]/))) {
      const value = m[2] ?? m[3] ?? JSON.parse(m[4]);
      segs.push({ kind: "filter", path: m[1].slice(1).split("."), value });
      s = s.slice(m[0].length);
    } else {
      throw new Error(`unsupported JSONPath near "${s}" in ${expr}`);
    }
  }
  return segs;
}

function escape(token: string | number): string {
  return String(token).replace(/~/g, "~0").replace(/\//g, "~1");
}

function children(node: unknown): Array<[string | number, unknown]> {
  if (Array.isArray(node)) return node.map((v, i) => [i, v]);
  if (node !== null && typeof node === "object") return Object.entries(node as Record<string, unknown>);
  return [];
}

/** JSON pointers of the nodes a JSONPath selects, in document order. */
export function jsonPathToPointers(doc: unknown, expr: string): string[] {
  let current: Array<[string, unknown]> = [["", doc]];
  for (const seg of parseJsonPath(expr)) {
    const next: Array<[string, unknown]> = [];
    for (const [ptr, node] of current) {
      switch (seg.kind) {
        case "child":
          if (node !== null && typeof node === "object" && !Array.isArray(node) && seg.name in (node as object)) next.push([`${ptr}/${escape(seg.name)}`, (node as any)[seg.name]]);
          break;
        case "index":
          if (Array.isArray(node) && seg.index < node.length) next.push([`${ptr}/${seg.index}`, node[seg.index]]);
          break;
        case "all":
          for (const [k, v] of children(node)) next.push([`${ptr}/${escape(k)}`, v]);
          break;
        case "filter":
          for (const [k, v] of Array.isArray(node) ? children(node) : []) {
            let x: any = v;
            for (const p of seg.path) x = x !== null && typeof x === "object" ? x[p] : undefined;
            if (x === seg.value) next.push([`${ptr}/${escape(k)}`, v]);
          }
          break;
        case "deep": {
          const walk = (p: string, n: unknown) => {
            if (n !== null && typeof n === "object" && !Array.isArray(n) && seg.name in (n as object)) next.push([`${p}/${escape(seg.name)}`, (n as any)[seg.name]]);
            for (const [k, v] of children(n)) walk(`${p}/${escape(k)}`, v);
          };
          walk(ptr, node);
          break;
        }
      }
    }
    current = next;
  }
  return current.map(([p]) => p);
}

function tokens(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new Error(`not a JSON pointer: ${pointer}`);
  return pointer.slice(1).split("/").map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function applyOne(doc: any, op: Op["op"], pointer: string, value: unknown): void {
  const path = tokens(pointer);
  if (path.length === 0) throw new Error(`${op} on the whole document is not supported`);
  let parent = doc;
  for (let i = 0; i < path.length - 1; i++) {
    const t = path[i];
    const key = Array.isArray(parent) ? Number(t) : t;
    if (parent[key] === undefined) {
      if (op !== "add") throw new Error(`${op} ${pointer}: ${path.slice(0, i + 1).join("/")} does not exist`);
      parent[key] = {}; // Envoy Gateway applies with EnsurePathExistsOnAdd
    }
    parent = parent[key];
    if (parent === null || typeof parent !== "object") throw new Error(`${op} ${pointer}: ${t} is not a container`);
  }
  const last = path[path.length - 1];
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length || (op !== "add" && i >= parent.length)) throw new Error(`${op} ${pointer}: index out of range`);
    if (op === "add") parent.splice(i, 0, structuredClone(value));
    else if (op === "replace") parent[i] = structuredClone(value);
    else parent.splice(i, 1);
    return;
  }
  if (op !== "add" && !(last in parent)) throw new Error(`${op} ${pointer}: no such member`);
  if (op === "remove") delete parent[last];
  else parent[last] = structuredClone(value);
}

/** Applies one EnvoyPatchPolicy operation to doc in place; throws like Envoy Gateway reports. */
export function applyPatch(doc: unknown, op: Op): void {
  if (!["add", "remove", "replace"].includes(op.op)) throw new Error(`unsupported op ${op.op}`);
  const suffix = op.path ?? "";
  let pointers: string[];
  if (op.jsonPath !== undefined) {
    pointers = jsonPathToPointers(doc, op.jsonPath).map((p) => (suffix === "" ? p : `${p}/${suffix.replace(/^\//, "")}`));
    if (pointers.length === 0) throw new Error(`jsonPath ${op.jsonPath} matched nothing`);
  } else {
    if (op.path === undefined) throw new Error("an operation needs path or jsonPath");
    pointers = [op.path];
  }
  for (const p of pointers) applyOne(doc, op.op, p, op.value);
}
