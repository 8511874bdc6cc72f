#!/usr/bin/env node
// npm run build: the wasm filter (build/wasm-epp.wasm) and the bundled TypeScript programs.
//   node scripts/build.mjs          everything
//   node scripts/build.mjs filter   the filter only
import { readFile, mkdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import asc from "assemblyscript/asc";
import { checkModule } from "./wasm-abi.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
process.chdir(root);
// (Not "--wasm": the AssemblyScript compiler reads that flag from process.argv itself.)
const wasmOnly = process.argv.includes("filter");

async function buildWasm() {
  await mkdir("build", { recursive: true });
  const { error, stderr } = await asc.main(["--config", "asconfig.json", "--target", "release"], {});
  if (error) {
    process.stderr.write(stderr.toString());
    throw new Error(`AssemblyScript compilation failed: ${error.message}`);
  }
  const bytes = await readFile("build/wasm-epp.wasm");
  const problems = checkModule(bytes);
  if (problems.length) throw new Error(`build/wasm-epp.wasm would not load in Envoy:\n  ${problems.join("\n  ")}`);
  // Informational lines go to stderr: stdout belongs to the command run after the build
  // (`npm run --silent bench -- --json` prints one JSON object there and nothing else).
  console.error(`build/wasm-epp.wasm  ${(bytes.length / 1024).toFixed(1)} KiB, imports checked against proxy-wasm ABI 0.2.1`);
}

// TypeScript entry points bundled for Node with esbuild.
const bundles = [
  { entry: "sidecar/main.ts", out: "build/sidecar.js" },
];

async function buildBundles() {
  const esbuild = await import("esbuild");
  for (const b of bundles) {
    if (!existsSync(b.entry)) continue;
    await esbuild.build({
      entryPoints: [b.entry],
      outfile: b.out,
      bundle: true,
      platform: "node",
      target: "node20",
      format: "esm",
      sourcemap: true,
      banner: { js: "import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);" },
      logLevel: "warning",
    });
    console.error(b.out);
  }
}

try {
  await buildWasm();
  if (!wasmOnly) await buildBundles();
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
