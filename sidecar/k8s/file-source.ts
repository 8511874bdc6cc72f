// File mode: the cluster is the *.yaml / *.yml files directly in one directory (subdirectories
// are not read; hidden files are skipped). The directory is watched (fs.watch) and also polled,
// since some file systems and ConfigMap volume updates do not deliver events reliably.
//
// A file that fails to parse keeps the objects it had before (a half-saved edit does not empty
// the cluster); the error is logged and counted.

import { readdir, readFile, stat } from "node:fs/promises";
import { watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { SidecarError } from "../errors.ts";
import type { Logger } from "../observability/log.ts";
import { parseManifests, type ManifestObject } from "./manifests.ts";
import { INFERENCE_MODEL, INFERENCE_MODEL_REWRITE, INFERENCE_OBJECTIVE, INFERENCE_POOL, INFERENCE_POOL_V1, INFERENCE_TRAFFIC_POLICY, POD, selectorMatches } from "./resources.ts";
import type { InferenceModel, InferenceModelRewrite, InferenceObjective, InferencePool, InferencePoolV1, InferenceTrafficPolicy, Pod, ResourceSource, Snapshot } from "./types.ts";
import { nameOf, namespaceOf } from "./types.ts";

interface FileEntry {
  stamp: string; // mtime, size, inode: when it changes the file is re-read
  objects: ManifestObject[];
}

export interface FileSourceOptions {
  dir: string;
  defaultNamespace: string;
  log: Logger;
  pollMs?: number;
  debounceMs?: number;
  onWarning?: (code: "manifest_invalid", message: string) => void;
}

export class FileSource implements ResourceSource {
  private files = new Map<string, FileEntry>();
  private snap: Snapshot = emptySnapshot();
  private watcher?: FSWatcher;
  private poll?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  private loading?: Promise<void>;
  private again = false;
  private loaded = false;
  private stopped = false;
  private onChange: () => void = () => {};
  private lastDirError = "";

  constructor(private readonly opts: FileSourceOptions) {}

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    try {
      const s = await stat(this.opts.dir);
      if (!s.isDirectory()) throw new Error("not a directory");
    } catch (err) {
      throw new SidecarError("manifests_unreadable", `--manifests ${this.opts.dir}: ${(err as Error).message}`);
    }
    await this.reload();
    try {
      this.watcher = watch(this.opts.dir, { persistent: false }, () => this.schedule());
      this.watcher.on("error", (err) => this.opts.log.warn("manifests_watch_failed", `watching ${this.opts.dir} failed, polling only: ${err.message}`));
    } catch (err) {
      this.opts.log.warn("manifests_watch_failed", `cannot watch ${this.opts.dir}, polling only: ${(err as Error).message}`);
    }
    this.poll = setInterval(() => this.schedule(0), this.opts.pollMs ?? 2000);
    this.poll.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.debounce);
    await this.loading;
  }

  synced(): boolean {
    return this.loaded;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  // Re-reads the directory now (tests; the watcher and the poll call it too).
  reload(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = this.load().finally(() => {
      this.loading = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.reload();
      }
    });
    return this.loading;
  }

  private schedule(delay = this.opts.debounceMs ?? 50): void {
    if (this.stopped) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), delay);
  }

  private async load(): Promise<void> {
    const { dir, defaultNamespace, log } = this.opts;
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => /\.ya?ml$/i.test(n) && !n.startsWith(".")).sort();
      this.lastDirError = "";
    } catch (err) {
      const msg = `cannot read ${dir}: ${(err as Error).message}; keeping the last objects`;
      if (msg !== this.lastDirError) log.warn("manifests_unreadable", msg, { code: "manifests_unreadable" });
      this.lastDirError = msg;
      return;
    }
    let changed = false;
    const next = new Map<string, FileEntry>();
    for (const name of names) {
      const path = join(dir, name);
      let stamp: string;
      try {
        const s = await stat(path); // follows symlinks (ConfigMap volumes)
        if (!s.isFile()) continue;
        stamp = `${s.mtimeMs}:${s.size}:${s.ino}`;
      } catch {
        continue; // removed between readdir and stat
      }
      const prev = this.files.get(name);
      if (prev && prev.stamp === stamp) {
        next.set(name, prev);
        continue;
      }
      changed = true;
      let text: string;
      try {
        text = await readFile(path, "utf8");
      } catch (err) {
        this.warn(`cannot read ${path}: ${(err as Error).message}`);
        if (prev) next.set(name, prev);
        continue;
      }
      const parsed = parseManifests(text, defaultNamespace, path);
      for (const e of parsed.errors) this.warn(e);
      if (parsed.errors.length > 0 && prev && parsed.objects.length === 0) {
        // Keep what the file had; the stamp is updated so the same broken content is not re-reported.
        next.set(name, { stamp, objects: prev.objects });
        continue;
      }
      next.set(name, { stamp, objects: parsed.objects });
      log.debug("manifest_loaded", `read ${path}`, { objects: parsed.objects.length, ignored: parsed.ignored });
    }
    if (next.size !== this.files.size || [...this.files.keys()].some((k) => !next.has(k))) changed = true;
    this.files = next;
    const first = !this.loaded;
    this.loaded = true;
    if (changed || first) {
      this.snap = buildSnapshot([...next.values()].flatMap((e) => e.objects), (msg) => this.warn(msg));
      if (!this.stopped) this.onChange();
    }
  }

  private warn(message: string): void {
    this.opts.log.warn("manifest_invalid", message, { code: "manifest_invalid" });
    this.opts.onWarning?.("manifest_invalid", message);
  }
}

function emptySnapshot(): Snapshot {
  return { pools: [], models: [], policies: [], poolsV1: [], objectives: [], rewrites: [], podsFor: () => [] };
}

// One object per API group/kind/namespace/name (both InferencePool APIs may hold one name): a
// later file (by name) replaces an earlier one.
export function buildSnapshot(objects: ManifestObject[], warn: (msg: string) => void = () => {}): Snapshot {
  const byKey = new Map<string, ManifestObject>();
  for (const o of objects) {
    const key = `${o.resource.group === "" ? "" : o.resource.group + "/"}${o.resource.kind}/${namespaceOf(o.object, "")}/${nameOf(o.object)}`;
    if (byKey.has(key)) warn(`${key} is defined more than once; the last definition is used`);
    byKey.set(key, o);
  }
  const pools: InferencePool[] = [];
  const models: InferenceModel[] = [];
  const policies: InferenceTrafficPolicy[] = [];
  const poolsV1: InferencePoolV1[] = [];
  const objectives: InferenceObjective[] = [];
  const rewrites: InferenceModelRewrite[] = [];
  const podsByNs = new Map<string, Pod[]>();
  for (const { resource, object } of byKey.values()) {
    if (resource === INFERENCE_POOL) pools.push(object as InferencePool);
    else if (resource === INFERENCE_MODEL) models.push(object as InferenceModel);
    else if (resource === INFERENCE_TRAFFIC_POLICY) policies.push(object as InferenceTrafficPolicy);
    else if (resource === INFERENCE_POOL_V1) poolsV1.push(object as InferencePoolV1);
    else if (resource === INFERENCE_OBJECTIVE) objectives.push(object as InferenceObjective);
    else if (resource === INFERENCE_MODEL_REWRITE) rewrites.push(object as InferenceModelRewrite);
    else if (resource === POD) {
      const ns = namespaceOf(object, "");
      const list = podsByNs.get(ns) ?? [];
      list.push(object as Pod);
      podsByNs.set(ns, list);
    }
  }
  return {
    pools,
    models,
    policies,
    poolsV1,
    objectives,
    rewrites,
    podsFor: (namespace, selector) => (podsByNs.get(namespace) ?? []).filter((p) => selectorMatches(selector, p.metadata?.labels)),
  };
}
