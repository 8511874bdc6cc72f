// wasm-epp sidecar: node build/sidecar.js --help

import { helpText, parseOptions, type Options } from "./cli.ts";
import { describe, isSidecarError } from "./errors.ts";
import { Logger } from "./observability/log.ts";
import { startSidecar } from "./app.ts";

declare const __SIDECAR_VERSION__: string | undefined;
const VERSION = typeof __SIDECAR_VERSION__ === "string" ? __SIDECAR_VERSION__ : "0.1.0";

async function main(argv: string[]): Promise<number> {
  let o: Options;
  try {
    o = parseOptions(argv);
  } catch (err) {
    process.stderr.write(`wasm-epp sidecar: ${describe(err)}\nRun with --help for the flags.\n`);
    return 2;
  }
  if (o.help) {
    process.stdout.write(helpText(VERSION));
    return 0;
  }
  if (o.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const log = new Logger(o.logLevel);
  let sidecar;
  try {
    sidecar = await startSidecar(o, { log });
  } catch (err) {
    const code = isSidecarError(err) ? err.code : "start_failed";
    log.error("start_failed", describe(err), { code });
    process.stderr.write(`wasm-epp sidecar: ${describe(err)}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        log.warn("shutdown_forced", `second ${signal}: exiting now`);
        resolve(1);
        return;
      }
      signalled = true;
      log.info("shutdown", `${signal}: stopping watches and scrapes, finishing the push in flight`);
      sidecar.stop().then(
        () => {
          log.info("stopped", "bye");
          resolve(0);
        },
        (err) => {
          log.error("shutdown_failed", describe(err));
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

process.on("unhandledRejection", (reason) => {
  process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), level: "error", event: "unhandled_rejection", msg: describe(reason) }) + "\n");
});

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (err) => {
    process.stderr.write(`wasm-epp sidecar: ${describe(err)}\n`);
    process.exit(1);
  },
);
