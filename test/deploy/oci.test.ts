// npm run oci (scripts/oci.ts): the OCI image layout of the filter is what Envoy Gateway and Istio
// pull (last layer application/vnd.oci.image.layer.v1.tar+gzip holding plugin.wasm), every digest
// matches its blob, the module comes out byte-identical, and the bytes are reproducible.
// Inspected with skopeo when it is installed, and always by reading the layout directly.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { buildOciLayout, crc32, gzipStored, MEDIA_TYPES, sha256, tarOneFile, type OciImage } from "../../scripts/oci.ts";
import { repoPath } from "./files.ts";

const WASM = repoPath("build/wasm-epp.wasm");
const work = mkdtempSync(join(tmpdir(), "wasm-epp-oci-"));
process.on("exit", () => rmSync(work, { recursive: true, force: true }));

function wasmBytes(): Buffer {
  assert.ok(existsSync(WASM), "build/wasm-epp.wasm is missing: run npm run build:filter (npm test builds it first)");
  return readFileSync(WASM);
}

function readJson(path: string): any {
  return JSON.parse(readFileSync(path, "utf8"));
}

function blob(dir: string, digest: string): Buffer {
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  const bytes = readFileSync(join(dir, "blobs", "sha256", digest.slice(7)));
  assert.equal(sha256(bytes), digest, `blob ${digest} does not hash to its name`);
  return bytes;
}

interface TarEntry { name: string; mode: number; uid: number; gid: number; mtime: number; type: string; data: Buffer }

// A plain ustar reader: enough to check what is in the layer.
function untar(tar: Buffer): TarEntry[] {
  const out: TarEntry[] = [];
  const field = (h: Buffer, off: number, len: number) => h.subarray(off, off + len).toString("ascii").replace(/\0.*$/s, "").trim();
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    assert.equal(parseInt(field(h, 148, 8), 8), sum, "tar header checksum");
    assert.equal(h.subarray(257, 263).toString("ascii"), "ustar\0", "ustar magic");
    const size = parseInt(field(h, 124, 12), 8);
    out.push({
      name: field(h, 0, 100),
      mode: parseInt(field(h, 100, 8), 8),
      uid: parseInt(field(h, 108, 8), 8),
      gid: parseInt(field(h, 116, 8), 8),
      mtime: parseInt(field(h, 136, 12), 8),
      type: String.fromCharCode(h[156]),
      data: tar.subarray(off + 512, off + 512 + size),
    });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

function build(name: string, tag = "0.1.0", wasm: Uint8Array = wasmBytes()): OciImage {
  return buildOciLayout({ wasm, dir: join(work, name), tag, version: "0.1.0" });
}

test("layout: oci-layout, index.json naming the tag, one manifest", () => {
  const img = build("a");
  assert.deepEqual(readJson(join(img.dir, "oci-layout")), { imageLayoutVersion: "1.0.0" });
  const index = readJson(join(img.dir, "index.json"));
  assert.equal(index.schemaVersion, 2);
  assert.equal(index.mediaType, MEDIA_TYPES.index);
  assert.equal(index.manifests.length, 1);
  const m = index.manifests[0];
  assert.equal(m.mediaType, "application/vnd.oci.image.manifest.v1+json");
  assert.equal(m.digest, img.digest);
  assert.equal(m.annotations["org.opencontainers.image.ref.name"], "0.1.0");
  assert.equal(m.size, blob(img.dir, m.digest).length);
});

test("manifest, config and layer: media types, sizes and digests match the blobs", () => {
  const img = build("b");
  const manifest = JSON.parse(blob(img.dir, img.digest).toString("utf8"));
  assert.equal(manifest.schemaVersion, 2);
  assert.equal(manifest.mediaType, "application/vnd.oci.image.manifest.v1+json");
  assert.equal(manifest.config.mediaType, "application/vnd.oci.image.config.v1+json");
  assert.equal(manifest.config.size, blob(img.dir, manifest.config.digest).length);
  assert.equal(manifest.layers.length, 1);
  const layer = manifest.layers[0];
  // Envoy Gateway and Istio take the last layer of this type and look for plugin.wasm in it;
  // application/vnd.wasm.content.layer.v1+wasm would not be accepted.
  assert.equal(layer.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
  const layerBytes = blob(img.dir, layer.digest);
  assert.equal(layer.size, layerBytes.length);
  const config = JSON.parse(blob(img.dir, manifest.config.digest).toString("utf8"));
  assert.equal(config.rootfs.type, "layers");
  const tar = gunzipSync(layerBytes);
  assert.deepEqual(config.rootfs.diff_ids, [sha256(tar)]);
  assert.equal(typeof config.architecture, "string");
  assert.equal(typeof config.os, "string");
});

test("the layer holds exactly plugin.wasm, byte-identical to build/wasm-epp.wasm", () => {
  const img = build("c");
  const manifest = JSON.parse(blob(img.dir, img.digest).toString("utf8"));
  const entries = untar(gunzipSync(blob(img.dir, manifest.layers[0].digest)));
  assert.equal(entries.length, 1);
  const [e] = entries;
  assert.equal(e.name, "plugin.wasm");
  assert.equal(e.type, "0");
  assert.deepEqual([e.mode, e.uid, e.gid, e.mtime], [0o644, 0, 0, 0]);
  assert.ok(e.data.equals(wasmBytes()), "plugin.wasm differs from build/wasm-epp.wasm");
  assert.equal(img.wasmSha256, sha256(wasmBytes()));
});

test("reproducible: same module, same bytes and digests; the tag only changes index.json", () => {
  const one = build("d1");
  const two = build("d2");
  assert.equal(one.digest, two.digest);
  for (const d of [one.layer.digest, one.config.digest, one.digest]) assert.ok(blob(one.dir, d).equals(blob(two.dir, d)));
  const layer = blob(one.dir, one.layer.digest);
  assert.deepEqual([...layer.subarray(4, 8)], [0, 0, 0, 0], "gzip MTIME must be 0");
  assert.equal(layer[9], 0xff, "gzip OS must be 255 (unknown)");
  const other = build("d3", "v9");
  assert.equal(other.digest, one.digest);
  assert.equal(readJson(join(other.dir, "index.json")).manifests[0].annotations["org.opencontainers.image.ref.name"], "v9");
  const changed = build("d4", "0.1.0", Buffer.concat([wasmBytes(), Buffer.from([0])]));
  assert.notEqual(changed.digest, one.digest);
});

test("the format is fixed: a known module gives a known digest on any machine", () => {
  const wasm = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]); // an empty module
  const img = buildOciLayout({ wasm, dir: join(work, "golden"), tag: "golden", version: "0.0.0" });
  assert.equal(img.layer.digest, "sha256:ed1a94889008717a8a84bfe2fd83cfc71470eeb8a1580e2abde86703a95c8c7b");
  assert.equal(img.digest, "sha256:ae995afeace4b5f3128391f6b0db1cf99edb66ce70e19c038ac4119c4c0a8f92");
});

test("gzipStored and crc32 agree with zlib (empty, one block, several blocks)", () => {
  for (const n of [0, 1, 65535, 65536, 200_000]) {
    const data = Buffer.alloc(n);
    for (let i = 0; i < n; i++) data[i] = (i * 7919) & 0xff;
    assert.ok(gunzipSync(gzipStored(data)).equals(data), `round trip of ${n} bytes`);
  }
  assert.equal(crc32(Buffer.from("123456789")), 0xcbf43926);
  assert.equal(tarOneFile("plugin.wasm", Buffer.alloc(1)).length, 512 * 4);
  assert.throws(() => buildOciLayout({ wasm: Buffer.alloc(1), dir: join(work, "bad"), tag: "bad tag" }), /invalid tag/);
});

test("npm run oci builds the filter and runs scripts/oci.ts", () => {
  const pkg = readJson(repoPath("package.json"));
  assert.match(pkg.scripts.oci, /scripts\/build\.mjs filter/);
  assert.match(pkg.scripts.oci, /scripts\/oci\.ts/);
  const out = execFileSync(process.execPath, ["--import", "tsx", repoPath("scripts/oci.ts"), "--out", join(work, "cli"), "--tag", "cli"], { encoding: "utf8" });
  const img = readJson(join(work, "cli", "index.json")).manifests[0];
  assert.ok(out.includes(`manifest  ${img.digest}`), out);
  assert.ok(out.includes(`skopeo copy oci:`), out);
});

const skopeo = spawnSync("skopeo", ["--version"], { encoding: "utf8" });
const haveSkopeo = skopeo.status === 0;

test("skopeo inspect of the layout", { skip: haveSkopeo ? false : "skopeo not installed: layout checked by reading it directly (tests above); skopeo inspect/copy not run" }, (t) => {
  t.diagnostic(skopeo.stdout.trim());
  const img = build("skopeo", "0.1.0");
  const info = JSON.parse(execFileSync("skopeo", ["inspect", `oci:${img.dir}:0.1.0`], { encoding: "utf8" }));
  assert.equal(info.Digest, img.digest);
  assert.deepEqual(info.Layers, [img.layer.digest]);
  const copy = join(work, "skopeo-copy");
  execFileSync("skopeo", ["copy", "--quiet", `oci:${img.dir}:0.1.0`, `dir:${copy}`]);
  assert.ok(readFileSync(join(copy, img.layer.digest.slice(7))).equals(blob(img.dir, img.layer.digest)), "skopeo copy changed the layer");
  assert.equal(sha256(readFileSync(join(copy, "manifest.json"))), img.digest, "skopeo copy changed the manifest");
});

test("the digest pinned in deploy/kubernetes/base is the one this tree builds", () => {
  const version = readJson(repoPath("package.json")).version;
  const img = buildOciLayout({ wasm: wasmBytes(), dir: join(work, "pin"), tag: version, version });
  const policy = readFileSync(repoPath("deploy/kubernetes/base/envoyextensionpolicy.yaml"), "utf8");
  const pins = [...policy.matchAll(/sha256: ([0-9a-f]{64})/g)].map((m) => m[1]);
  assert.equal(pins.length, 2, "one pin per EnvoyExtensionPolicy");
  for (const pin of pins) {
    assert.equal(`sha256:${pin}`, img.digest,
      "the module changed: run npm run oci and put the manifest digest it prints into deploy/kubernetes/base/envoyextensionpolicy.yaml");
  }
});
