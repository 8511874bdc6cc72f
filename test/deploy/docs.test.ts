// docs/kubernetes.md and docs/standalone-envoy.md: every repository path and link they name
// exists, every anchor resolves, the kubectl/kustomize targets they apply are real, the request
// bodies they build are JSON, and the sidecar flags they use exist.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseOptions } from "../../sidecar/cli.ts";
import { repoPath } from "./files.ts";

const DOCS = ["docs/kubernetes.md", "docs/standalone-envoy.md"];

function slugs(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#+\s+(.+)$/gm)) {
    out.add(m[1].trim().toLowerCase().replace(/[`'’]/g, "").replace(/[^a-z0-9 _-]/g, "").replace(/ /g, "-"));
  }
  return out;
}

function codeBlocks(markdown: string, lang: string): string[] {
  return [...markdown.matchAll(new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g"))].map((m) => m[1]);
}

for (const doc of DOCS) {
  const text = readFileSync(repoPath(doc), "utf8");

  test(`${doc}: repository paths exist`, () => {
    const paths = new Set<string>();
    for (const m of text.matchAll(/(?<![\w/.-])((?:deploy|docs|scripts|sidecar|assembly|test)\/[A-Za-z0-9_./-]*[A-Za-z0-9_-])/g)) {
      if (/(exec -it|logs) $/.test(text.slice(Math.max(0, m.index! - 9), m.index))) continue; // kubectl's deploy/<name>
      paths.add(m[1]);
    }
    assert.ok(paths.size >= 5, [...paths].join(", "));
    const userCreated = new Set(["deploy/kubernetes/base/push-token", "deploy/kubernetes/base/peer-token"]); // the token files the reader makes
    for (const p of paths) if (!userCreated.has(p)) assert.ok(existsSync(repoPath(p)), `${doc} names ${p}, which does not exist`);
  });

  test(`${doc}: links and anchors resolve`, () => {
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1];
      if (/^https?:/.test(target)) continue;
      const [file, anchor] = target.split("#");
      const path = file === "" ? repoPath(doc) : join(dirname(repoPath(doc)), file);
      assert.ok(existsSync(path), `${doc}: link to missing ${target}`);
      if (anchor) assert.ok(slugs(readFileSync(path, "utf8")).has(anchor), `${doc}: no heading for #${anchor} in ${file || doc}`);
    }
  });

  test(`${doc}: kubectl -f/-k targets and sidecar flags are real`, () => {
    const shell = codeBlocks(text, "sh").join("\n");
    for (const m of shell.matchAll(/kubectl (?:apply|delete|create)[^\n]*?\s-(f|k)\s+(\S+)/g)) {
      const target = m[2];
      if (target === "-") continue;
      assert.ok(existsSync(repoPath(target)), `${doc}: kubectl -${m[1]} ${target} does not exist`);
      if (m[1] === "k") assert.ok(existsSync(repoPath(target, "kustomization.yaml")), `${target} is not a kustomization`);
    }
    for (const m of shell.matchAll(/node build\/sidecar\.js ([^\n]*)/g)) parseOptions(m[1].trim().split(/\s+/));
  });
}

test("docs/kubernetes.md: the prefix-check bodies are JSON for the deployed model, built by the commands shown", () => {
  const text = readFileSync(repoPath("docs/kubernetes.md"), "utf8");
  const echo = codeBlocks(text, "sh").join("\n").split("\n").filter((l) => l.startsWith("echo '"));
  assert.equal(echo.length, 2);
  const dir = mkdtempSync(join(tmpdir(), "wasm-epp-docs-"));
  try {
    execFileSync("bash", ["-c", echo.join("\n")], { cwd: dir });
    for (const f of ["round1.txt", "round2.txt"]) {
      const body = JSON.parse(readFileSync(join(dir, f), "utf8"));
      assert.equal(body.model, "/model/qwen");
    }
    const r1 = JSON.parse(readFileSync(join(dir, "round1.txt"), "utf8"));
    const r2 = JSON.parse(readFileSync(join(dir, "round2.txt"), "utf8"));
    assert.equal(r2.messages[0].content, r1.messages[0].content, "round 2 repeats round 1's prompt: the shared prefix");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
