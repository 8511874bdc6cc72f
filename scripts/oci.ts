// npm run oci: packs build/wasm-epp.wasm as an OCI image layout in build/oci, the image format
// Envoy Gateway (EnvoyExtensionPolicy code.type Image) and Istio (WasmPlugin oci://) pull: one
// layer of media type application/vnd.oci.image.layer.v1.tar+gzip holding the file plugin.wasm.
// No container engine is needed; push the layout with skopeo (see docs/kubernetes.md):
//
//   skopeo copy oci:build/oci:0.1.0 docker://registry.example.com/wasm-epp/module:0.1.0
//
// The bytes depend on nothing but the module and the tag, so the digest is reproducible: the tar
// entry has fixed metadata (mode 0644, uid/gid 0, mtime 0), the gzip member has no timestamp or
// OS mark and holds stored (uncompressed) deflate blocks — compressors differ between zlib builds,
// and some even between CPUs — and the JSON is written with a fixed key order and no dates.
//
//   tsx scripts/oci.ts [--wasm build/wasm-epp.wasm] [--out build/oci] [--tag <package version>]

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const MEDIA_TYPES = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

export const PLUGIN_FILE = "plugin.wasm";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface OciImage {
  dir: string;
  tag: string;
  /** The manifest's digest, "sha256:<hex>": what registries, Envoy Gateway's code.image.sha256 (hex only) and image@digest refer to. */
  digest: string;
  manifest: Descriptor;
  config: Descriptor;
  layer: Descriptor;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: string;
  /** sha256 of plugin.wasm itself (what Envoy checks once Envoy Gateway serves the module). */
  wasmSha256: string;
}

export function sha256(bytes: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(bytes).digest("hex");
}

// --- tar (POSIX ustar), one regular file ---------------------------------------------------------

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

export function tarOneFile(name: string, data: Uint8Array): Uint8Array {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar: name too long: ${name}`);
  const header = Buffer.alloc(512, 0);
  header.write(name, 0, "utf8"); // name[100]
  header.write(octal(0o644, 8), 100, "ascii"); // mode
  header.write(octal(0, 8), 108, "ascii"); // uid
  header.write(octal(0, 8), 116, "ascii"); // gid
  header.write(octal(data.length, 12), 124, "ascii"); // size
  header.write(octal(0, 12), 136, "ascii"); // mtime
  header.write("        ", 148, "ascii"); // chksum, spaces while summing
  header.write("0", 156, "ascii"); // typeflag: regular file
  header.write("ustar\0", 257, "ascii"); // magic
  header.write("00", 263, "ascii"); // version
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "ascii");
  const padded = Math.ceil(data.length / 512) * 512;
  const out = Buffer.alloc(512 + padded + 1024, 0); // two zero blocks end the archive
  header.copy(out, 0);
  Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, 512);
  return out;
}

// --- gzip (RFC 1952) with stored deflate blocks (RFC 1951 §3.2.4) ---------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function gzipStored(data: Uint8Array): Uint8Array {
  const MAX = 65535;
  const blocks = Math.max(1, Math.ceil(data.length / MAX));
  const out = Buffer.alloc(10 + blocks * 5 + data.length + 8);
  // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown)
  Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]).copy(out, 0);
  let o = 10;
  for (let b = 0; b < blocks; b++) {
    const start = b * MAX;
    const len = Math.min(MAX, data.length - start);
    out[o++] = b === blocks - 1 ? 1 : 0; // BFINAL, BTYPE=00 (stored), then byte-aligned
    out.writeUInt16LE(len, o);
    out.writeUInt16LE(~len & 0xffff, o + 2);
    o += 4;
    Buffer.from(data.buffer, data.byteOffset + start, len).copy(out, o);
    o += len;
  }
  out.writeUInt32LE(crc32(data), o);
  out.writeUInt32LE(data.length >>> 0, o + 4);
  return out;
}

// --- the image ------------------------------------------------------------------------------------

function json(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value));
}

export function buildOciLayout(opts: { wasm: Uint8Array; dir: string; tag: string; version?: string }): OciImage {
  const { wasm, dir, tag } = opts;
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(tag)) throw new Error(`invalid tag ${JSON.stringify(tag)}`);
  const tar = tarOneFile(PLUGIN_FILE, wasm);
  const layerBytes = gzipStored(tar);
  const diffId = sha256(tar);
  const configBytes = json({
    architecture: "wasm",
    os: "wasip1",
    config: {},
    rootfs: { type: "layers", diff_ids: [diffId] },
  });
  const config: Descriptor = { mediaType: MEDIA_TYPES.config, digest: sha256(configBytes), size: configBytes.length };
  const layer: Descriptor = {
    mediaType: MEDIA_TYPES.layer,
    digest: sha256(layerBytes),
    size: layerBytes.length,
    annotations: { "org.opencontainers.image.title": PLUGIN_FILE },
  };
  const manifestBytes = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    config,
    layers: [layer],
    annotations: {
      "org.opencontainers.image.title": "wasm-epp",
      "org.opencontainers.image.description": "wasm-epp proxy-wasm HTTP filter (root id wasm-epp) for Envoy >= 1.35",
      "org.opencontainers.image.licenses": "Apache-2.0",
      ...(opts.version ? { "org.opencontainers.image.version": opts.version } : {}),
    },
  });
  const manifest: Descriptor = { mediaType: MEDIA_TYPES.manifest, digest: sha256(manifestBytes), size: manifestBytes.length };
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.index,
    manifests: [{ ...manifest, annotations: { "org.opencontainers.image.ref.name": tag } }],
  };

  rmSync(dir, { recursive: true, force: true });
  const blobs = join(dir, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  for (const [desc, bytes] of [[layer, layerBytes], [config, configBytes], [manifest, manifestBytes]] as const) {
    writeFileSync(join(blobs, desc.digest.slice("sha256:".length)), bytes);
  }
  writeFileSync(join(dir, "oci-layout"), json({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(join(dir, "index.json"), json(index));
  return { dir, tag, digest: manifest.digest, manifest, config, layer, diffId, wasmSha256: sha256(wasm) };
}

function main(argv: string[]): void {
  const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  const args: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (!["--wasm", "--out", "--tag"].includes(flag) || i + 1 >= argv.length) {
      console.error(`usage: tsx scripts/oci.ts [--wasm FILE] [--out DIR] [--tag TAG]  (unknown or incomplete: ${flag})`);
      process.exit(2);
    }
    args[flag.slice(2)] = argv[++i];
  }
  const wasmPath = resolve(root, args.wasm ?? "build/wasm-epp.wasm");
  const dir = resolve(root, args.out ?? "build/oci");
  const tag = args.tag ?? pkg.version;
  const image = buildOciLayout({ wasm: readFileSync(wasmPath), dir, tag, version: pkg.version });
  const relDir = dir.startsWith(root + "/") ? dir.slice(root.length + 1) : dir;
  console.log(`${relDir}  OCI image layout, tag ${tag}`);
  console.log(`  layer     ${image.layer.digest}  ${image.layer.size} bytes  ${MEDIA_TYPES.layer} (${PLUGIN_FILE})`);
  console.log(`  config    ${image.config.digest}`);
  console.log(`  manifest  ${image.digest}`);
  console.log(`  plugin.wasm ${image.wasmSha256}`);
  console.log(`push:   skopeo copy oci:${relDir}:${tag} docker://<registry>/<repository>:${tag}`);
  console.log(`pin:    EnvoyExtensionPolicy code.image.sha256: ${image.digest.slice("sha256:".length)}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2));
}
