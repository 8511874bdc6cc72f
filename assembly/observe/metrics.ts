// Metrics with labels, as Envoy wasm metrics.
//
// proxy_define_metric takes a bare name: Envoy has no tag syntax for wasm metrics. So the labels
// are spelled into the name as `.<tag>=<value>;` after the family name, e.g.
//
//   inference_objective_request_total.model_name=qwen;.target_model_name=qwen-lora;
//
// and the bootstrap's stats_config.stats_tags extracts each with the regex (\.<tag>=(.*?);)
// (deploy/envoy/envoy.yaml, docs/metrics.md). /stats/prometheus then prints
// inference_objective_request_total{model_name="qwen",target_model_name="qwen-lora"}.
//
// Each label set is a stat of its own, defined on first use and remembered by this worker. Label
// values come from the routing state (model and pod names), never from a client as such, and each
// family has at most maxSeries label sets per worker: further ones are counted under "other".
// A model's and a pod's series are kept by id in series.ts; TaggedMetrics counts the rest by name
// (errors by code).

import { defineMetric, incrementMetric, METRIC_COUNTER } from "../host";

const MAX_VALUE_CHARS: i32 = 128;
export const OTHER: string = "other";

// A label value as it can sit in a stat name: no ';' (it ends the value), no control characters
// (they would break /stats' text), at most MAX_VALUE_CHARS characters.
export function labelValue(v: string): string {
  let clean = true;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c == 0x3b || c == 0x7f) {
      clean = false;
      break;
    }
  }
  let s = v;
  if (!clean) {
    const parts = new Array<string>();
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      parts.push(c < 0x20 || c == 0x3b || c == 0x7f ? "_" : String.fromCharCode(c));
    }
    s = parts.join("");
  }
  if (s.length > MAX_VALUE_CHARS) s = s.substring(0, MAX_VALUE_CHARS);
  return s.length == 0 ? "none" : s;
}

export function label(name: string, value: string): string {
  return "." + name + "=" + labelValue(value) + ";";
}

export class TaggedMetrics {
  private ids: Map<string, u32> = new Map<string, u32>();
  private series: Map<string, i32> = new Map<string, i32>();
  private maxSeries: i32;

  constructor(maxSeries: i32) {
    this.maxSeries = maxSeries;
  }

  // The counter of `family` with `labels` (a concatenation of label() results); past the
  // family's bound, its "other" series (`overflow`: the same labels with every value "other").
  private id(family: string, labels: string, overflow: string): u32 {
    const key = family + labels;
    if (this.ids.has(key)) return this.ids.get(key);
    const n = this.series.has(family) ? this.series.get(family) : 0;
    if (n >= this.maxSeries) {
      const okey = family + overflow;
      if (this.ids.has(okey)) return this.ids.get(okey);
      const oid = defineMetric(METRIC_COUNTER, okey);
      this.ids.set(okey, oid);
      return oid;
    }
    this.series.set(family, n + 1);
    const id = defineMetric(METRIC_COUNTER, key);
    this.ids.set(key, id);
    return id;
  }

  add(family: string, labels: string, overflow: string, by: i64): void {
    if (by == 0) return;
    incrementMetric(this.id(family, labels, overflow), by);
  }
}
