// The measured process of `npm run bench:peers`: one whole sidecar (sidecar/app.ts) started from
// the flags it is given, reporting its own CPU time (process.cpuUsage, user + system) when the
// parent asks over IPC: {cmd: "cpu"} -> {cpu: {user, system}} (µs), {cmd: "stop"} stops it.

import { parseOptions } from "../../sidecar/cli.ts";
import { startSidecar } from "../../sidecar/app.ts";
import { Logger } from "../../sidecar/observability/log.ts";

const o = parseOptions(process.argv.slice(2));
const sidecar = await startSidecar(o, { log: new Logger(o.logLevel) });
process.send!({ started: true, peerPort: sidecar.peers?.port ?? null });
process.on("message", async (m: { cmd: string }) => {
  if (m.cmd === "cpu") process.send!({ cpu: process.cpuUsage(), ready: sidecar.ready() });
  if (m.cmd === "stop") {
    await sidecar.stop();
    process.exit(0);
  }
});
