// The local stack's gateway when Envoy >= 1.35 is installed: a real Envoy running
// deploy/envoy/envoy.yaml (8080 plain, 8081 through build/wasm-epp.wasm, 127.0.0.1:19100 push
// listener), with the push token in its environment. Its admin listener is moved from the file's
// 127.0.0.1:9901 to 127.0.0.1:19000 (a --config-yaml overlay), where the host-based gateway
// serves the same /stats and /stats/prometheus (admin.ts).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

/** The local stack's admin port, whichever gateway runs (admin.ts serves it for the host). */
export const ENVOY_ADMIN_PORT = 19000;

export interface EnvoyGateway {
  plainUrl: string;
  inferenceUrl: string;
  pushUrl: string;
  adminUrl: string;
  process: ChildProcess;
  close(): Promise<void>;
}

// "envoy  version: 3fb3c2…/1.35.2/Clean/RELEASE/BoringSSL" -> [1, 35, 2]
export function parseEnvoyVersion(text: string): [number, number, number] | null {
  const m = /version:\s*\S*?\/(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

// The version of `envoy` on PATH, or null when there is none.
export function installedEnvoy(): { version: [number, number, number] | null; usable: boolean } | null {
  const r = spawnSync('envoy', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return null;
  const version = parseEnvoyVersion(`${r.stdout}${r.stderr}`);
  return { version, usable: version !== null && (version[0] > 1 || (version[0] === 1 && version[1] >= 35)) };
}

// The message of a wasm log line in Envoy's log, e.g. "... [info][wasm] ... wasm log wasm-epp
// wasm-epp wasm-epp: Request Handled model=..." -> "Request Handled model=...".
export function wasmLogMessage(line: string): string | null {
  const i = line.indexOf('wasm log ');
  if (i < 0) return null;
  const colon = line.indexOf(': ', i);
  return colon < 0 ? null : line.slice(colon + 2);
}

// `configPath`: another configuration than deploy/envoy/envoy.yaml (an example's: its pool and
// pods); relative paths in it (the module) are resolved from `root`.
export async function startEnvoyGateway(root: string, token: string, onLine: (line: string) => void, configPath?: string): Promise<EnvoyGateway> {
  // --config-yaml is merged over the file: only the admin port changes.
  const adminOverlay = `admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${ENVOY_ADMIN_PORT} } } }`;
  const child = spawn('envoy', ['-c', configPath ?? join(root, 'deploy/envoy/envoy.yaml'), '--config-yaml', adminOverlay, '--log-level', 'info', '--component-log-level', 'wasm:info'], {
    cwd: root,
    env: { ...process.env, WASM_EPP_PUSH_TOKEN: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [child.stdout!, child.stderr!]) {
    let buffered = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
  }
  // Ready when the admin endpoint says so.
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`envoy exited with status ${child.exitCode}`);
    try {
      const r = await fetch(`http://127.0.0.1:${ENVOY_ADMIN_PORT}/ready`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new Error('envoy did not become ready within 20 s');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    plainUrl: 'http://127.0.0.1:8080',
    inferenceUrl: 'http://127.0.0.1:8081',
    pushUrl: 'http://127.0.0.1:19100/wasm-epp/v1/state',
    adminUrl: `http://127.0.0.1:${ENVOY_ADMIN_PORT}`,
    process: child,
    close: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
