// Rendering deploy/kubernetes with `kubectl kustomize` (offline) in a scratch copy that holds a
// test push token, or, when kubectl is missing, reading the base's resource files as they are.

import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoPath, yamlDocs, yamlFile } from "./files.ts";

export const TEST_TOKEN = "kustomize-test-token-0123456789abcdef";
export const PEER_TEST_TOKEN = "kustomize-test-peer-token-0123456789abcdef";

const probe = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
export const KUBECTL: string | null = probe.status === 0 ? probe.stdout.trim().split("\n").join("; ") : null;

/** A scratch copy of deploy/kubernetes; base/push-token and base/peer-token hold the tokens given (none for null). */
export function scratchCopy(token: string | null = TEST_TOKEN, peerToken: string | null = PEER_TEST_TOKEN): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), "wasm-epp-kustomize-"));
  cpSync(repoPath("deploy/kubernetes"), join(dir, "kubernetes"), { recursive: true });
  rmSync(join(dir, "kubernetes", "base", "push-token"), { force: true });
  rmSync(join(dir, "kubernetes", "base", "peer-token"), { force: true });
  if (token !== null) writeFileSync(join(dir, "kubernetes", "base", "push-token"), token);
  if (peerToken !== null) writeFileSync(join(dir, "kubernetes", "base", "peer-token"), peerToken);
  return { dir: join(dir, "kubernetes"), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function kustomize(dir: string): { ok: boolean; docs: any[]; stderr: string } {
  const r = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
  if (r.status !== 0) return { ok: false, docs: [], stderr: r.stderr };
  return { ok: true, docs: yamlDocs(r.stdout, `kubectl kustomize ${dir}`), stderr: r.stderr };
}

/** Renders an overlay ("base", "overlays/fail-open", ...) with the test token; requires kubectl. */
export function render(which: string): any[] {
  const copy = scratchCopy();
  try {
    const r = kustomize(join(copy.dir, which));
    if (!r.ok) throw new Error(`kubectl kustomize ${which} failed:\n${r.stderr}`);
    return r.docs;
  } finally {
    copy.cleanup();
  }
}

/** The base's resource files as written (no generator, image or name transformations). */
export function baseSources(): any[] {
  const kust = yamlFile(repoPath("deploy/kubernetes/base/kustomization.yaml"))[0];
  return (kust.resources as string[]).flatMap((f) => yamlFile(repoPath("deploy/kubernetes/base", f)));
}

export function base64(s: string): string {
  return Buffer.from(s).toString("base64");
}

export function readText(path: string): string {
  return readFileSync(path, "utf8");
}
