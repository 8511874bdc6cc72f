// Runs the sidecar as a separate process (from source, through tsx) and follows its JSON logs.

import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const MAIN = fileURLToPath(new URL("../../sidecar/main.ts", import.meta.url));

export interface Running {
  child: ChildProcess;
  logs: Array<Record<string, unknown>>;
  stderr: string[]; // lines that are not JSON
  stdout: string;
  waitForLog(pred: (r: Record<string, unknown>) => boolean, timeoutMs?: number, what?: string): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function runSidecar(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, WASM_EPP_PUSH_TOKEN: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  let stdout = "";
  let waiters: Array<{ pred: (r: Record<string, unknown>) => boolean; resolve: (r: Record<string, unknown>) => void }> = [];
  let buffer = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let rec: Record<string, unknown> | undefined;
      try {
        rec = JSON.parse(line);
      } catch {
        stderr.push(line);
        continue;
      }
      logs.push(rec!);
      const ready = waiters.filter((w) => w.pred(rec!));
      waiters = waiters.filter((w) => !w.pred(rec!));
      for (const w of ready) w.resolve(rec!);
    }
  });
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (c: string) => (stdout += c));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const running: Running = {
    child,
    logs,
    stderr,
    get stdout() {
      return stdout;
    },
    waitForLog(pred, timeoutMs = 10_000, what = "a log line") {
      const found = logs.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; logs:\n${logs.map((l) => JSON.stringify(l)).join("\n")}\n${stderr.join("\n")}`)), timeoutMs);
        waiters.push({ pred, resolve: (r) => (clearTimeout(timer), resolve(r)) });
      });
    },
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
  return running;
}
