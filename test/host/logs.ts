// Log capture. Envoy writes a module's proxy_log (and WASI stdout/stderr) as
//   wasm log<prefix>: <message>
// where <prefix> is " <root_id> <vm_id>" for root contexts and
// " <plugin name> <root_id> <vm_id>" for stream contexts (empty for the VM
// context that runs _initialize and malloc), at the matching spdlog level, and
// only when the `wasm` logger's level lets it through. Host-side events (VM
// failures, restricted calls, misuse warnings) are captured as source 'host'.

import { LOG_LEVEL_NAMES, type LogLevelName } from './abi.ts';

export type WorkerLabel = number | 'base' | 'canary';

export interface LogEntry {
  /** 0 trace .. 5 critical. */
  level: number;
  levelName: LogLevelName;
  message: string;
  /** 'plugin' = proxy_log, 'wasi' = fd_write to stdout/stderr, 'host' = emitted by the host. */
  source: 'plugin' | 'wasi' | 'host';
  /** Plugin name of the context that logged; undefined for the VM context and host events. */
  plugin?: string;
  rootId?: string;
  vmId: string;
  worker: WorkerLabel;
  contextId: number;
  /** Envoy's log prefix for the context (" root_id vm_id" or " name root_id vm_id"). */
  prefix: string;
  timeMs: number;
}

export type LogSink = (e: LogEntry) => void;

export function levelName(level: number): LogLevelName {
  return LOG_LEVEL_NAMES[level] ?? 'off';
}

/** One line in Envoy's format, with the worker appended for multi-worker runs. */
export function formatLogLine(e: LogEntry): string {
  const time = new Date(e.timeMs).toISOString().replace('T', ' ').replace('Z', '');
  const lvl = e.levelName === 'warn' ? 'warning' : e.levelName;
  const body = e.source === 'host' ? e.message : `wasm log${e.prefix}: ${e.message}`;
  return `[${time}][${e.worker === 'base' || e.worker === 'canary' ? e.worker : `worker_${e.worker}`}][${lvl}][wasm] ${body}`;
}
