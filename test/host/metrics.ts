// Envoy's stats store as far as proxy_define_metric & co. reach it.
//
// Every name defined from Wasm is stored as `wasmcustom.<name>` (Envoy's
// CustomStatNamespace, applied unconditionally); Envoy's /stats and
// Prometheus output strip that prefix again. Stats live in one store for the
// whole process, so the same name defined in several worker VMs (or several
// plugins) is one stat. Counters, gauges and histograms are separate
// namespaces, as in Envoy.
//
// Metric ids are per VM (see vm.ts): counters 4, 8, 12...; gauges 5, 9...;
// histograms 6, 10...; the low two bits encode the type.

import { CUSTOM_STAT_NAMESPACE } from './abi.ts';

export type MetricKind = 'counter' | 'gauge' | 'histogram';

export class Stat {
  value = 0n;
  /** Recorded values (histograms only). */
  samples: bigint[] = [];
  constructor(readonly name: string, readonly kind: MetricKind) {}
}

export interface MetricSnapshot {
  name: string;
  kind: MetricKind;
  value: number;
  samples?: number[];
}

export class StatsStore {
  private stats = new Map<string, Stat>();

  getOrCreate(fullName: string, kind: MetricKind): Stat {
    const key = `${kind}\u0000${fullName}`;
    let s = this.stats.get(key);
    if (!s) {
      s = new Stat(fullName, kind);
      this.stats.set(key, s);
    }
    return s;
  }

  /** Look a stat up by its full name (`wasmcustom.x`) or the name the module used (`x`). */
  find(name: string, kind?: MetricKind): Stat | undefined {
    const kinds: MetricKind[] = kind ? [kind] : ['counter', 'gauge', 'histogram'];
    const full = name.startsWith(`${CUSTOM_STAT_NAMESPACE}.`) ? name : `${CUSTOM_STAT_NAMESPACE}.${name}`;
    for (const k of kinds) {
      const s = this.stats.get(`${k}\u0000${full}`) ?? this.stats.get(`${k}\u0000${name}`);
      if (s) return s;
    }
    return undefined;
  }

  all(): MetricSnapshot[] {
    return [...this.stats.values()].map((s) => ({
      name: s.name,
      kind: s.kind,
      value: Number(s.value),
      ...(s.kind === 'histogram' ? { samples: s.samples.map(Number) } : {}),
    }));
  }

  /** Envoy /stats-style view: `wasmcustom.` stripped, counters and gauges only. */
  adminStats(): Record<string, number> {
    const out: Record<string, number> = {};
    const prefix = `${CUSTOM_STAT_NAMESPACE}.`;
    for (const s of this.stats.values()) {
      if (s.kind === 'histogram') continue;
      out[s.name.startsWith(prefix) ? s.name.slice(prefix.length) : s.name] = Number(s.value);
    }
    return out;
  }
}
