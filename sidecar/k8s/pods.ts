// Pod readiness and addresses.

import { isIP } from "node:net";
import type { Pod } from "./types.ts";

// Ready: condition Ready=True, not terminating (deletionTimestamp set) and not finished.
export function podReady(pod: Pod): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  const phase = pod.status?.phase;
  if (phase === "Succeeded" || phase === "Failed") return false;
  const conditions = pod.status?.conditions;
  if (!Array.isArray(conditions)) return false;
  return conditions.some((c) => c?.type === "Ready" && c?.status === "True");
}

// "ip:port" or "[ipv6]:port" in the form the filter accepts, or undefined when the IP is not
// one: IPv4 in dotted-quad without leading zeros; IPv6 in hex groups (no zone index, no embedded
// IPv4 tail), at most 39 characters.
export function formatAddress(ip: unknown, port: number): string | undefined {
  if (typeof ip !== "string" || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  const family = isIP(ip);
  if (family === 4) {
    if (!/^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(ip)) return undefined;
    return `${ip}:${port}`;
  }
  if (family === 6) {
    if (ip.length > 39 || !/^[0-9a-fA-F:]+$/.test(ip)) return undefined;
    return `[${ip}]:${port}`;
  }
  return undefined;
}

// The host part for an HTTP request to the pod (IPv6 without brackets for node:http).
export function podHost(pod: Pod): string | undefined {
  const ip = pod.status?.podIP;
  return typeof ip === "string" && isIP(ip) !== 0 ? ip : undefined;
}
