// Process-wide shared key/value data and shared queues, keyed by vm_id, with
// the semantics of src/shared_data.cc and src/shared_queue.cc.
//
// Shared data CAS rules:
//  - one CAS counter for the whole process (all vm_ids), starting at 1,
//    skipping 0 on wrap-around; every successful set assigns the next value;
//  - get on a missing key (or unknown vm_id) -> NotFound;
//  - set with cas == 0 -> unconditional;
//  - set with cas != 0 on an existing key whose cas differs -> CasMismatch;
//  - set with any cas on a MISSING key -> creates it (no CasMismatch).
//
// Shared queues: tokens come from one process-wide counter (0 is never used).
// register(vm_id, name) returns the existing token when the queue exists and
// re-points its "ready" notification to the registering VM/root context, so
// the last registrant is the one that receives proxy_on_queue_ready.

import { WasmResult } from './abi.ts';

export interface SharedEntry {
  value: Uint8Array;
  cas: number;
}

export class SharedData {
  private data = new Map<string, Map<string, SharedEntry>>();
  private casCounter = 1;

  private nextCas(): number {
    const c = this.casCounter;
    this.casCounter = (this.casCounter + 1) >>> 0;
    if (this.casCounter === 0) this.casCounter = 1;
    return c;
  }

  get(vmId: string, key: string): SharedEntry | undefined {
    return this.data.get(vmId)?.get(key);
  }

  /** Returns a WasmResult code. `value` is stored as given (callers pass a copy). */
  set(vmId: string, key: string, value: Uint8Array, cas: number): number {
    let map = this.data.get(vmId);
    if (!map) {
      map = new Map();
      this.data.set(vmId, map);
    }
    const existing = map.get(key);
    if (existing) {
      if (cas !== 0 && cas !== existing.cas) return WasmResult.CasMismatch;
      existing.value = value;
      existing.cas = this.nextCas();
    } else {
      map.set(key, { value, cas: this.nextCas() });
    }
    return WasmResult.Ok;
  }

  remove(vmId: string, key: string, cas = 0): number {
    const map = this.data.get(vmId);
    const e = map?.get(key);
    if (!map || !e) return WasmResult.NotFound;
    if (cas !== 0 && cas !== e.cas) return WasmResult.CasMismatch;
    map.delete(key);
    return WasmResult.Ok;
  }

  keys(vmId: string): string[] {
    return [...(this.data.get(vmId)?.keys() ?? [])];
  }

  /** Snapshot of one vm_id's data for assertions (values as bytes). */
  snapshot(vmId: string): Map<string, SharedEntry> {
    const out = new Map<string, SharedEntry>();
    for (const [k, e] of this.data.get(vmId) ?? []) out.set(k, { value: e.value.slice(), cas: e.cas });
    return out;
  }
}

/** Who gets proxy_on_queue_ready for a queue (the latest registrant). */
export interface QueueOwner {
  /** Deliver a ready notification; the host posts it onto the owner's dispatcher. */
  notify(token: number): void;
}

interface Queue {
  vmId: string;
  name: string;
  items: Uint8Array[];
  owner: QueueOwner;
}

export class SharedQueues {
  private byKey = new Map<string, number>();
  private queues = new Map<number, Queue>();
  private nextToken = 1;

  private allocToken(): number {
    for (;;) {
      const t = this.nextToken;
      this.nextToken = (this.nextToken + 1) >>> 0;
      if (t === 0) continue;
      if (!this.queues.has(t)) return t;
    }
  }

  register(vmId: string, name: string, owner: QueueOwner): number {
    const key = `${vmId}\u0000${name}`;
    let token = this.byKey.get(key);
    if (token === undefined) {
      token = this.allocToken();
      this.byKey.set(key, token);
      this.queues.set(token, { vmId, name, items: [], owner });
    } else {
      this.queues.get(token)!.owner = owner; // existing data is preserved
    }
    return token;
  }

  /** 0 when not found (cpp-host's convention). */
  resolve(vmId: string, name: string): number {
    return this.byKey.get(`${vmId}\u0000${name}`) ?? 0;
  }

  dequeue(token: number): { result: number; data?: Uint8Array } {
    const q = this.queues.get(token);
    if (!q) return { result: WasmResult.NotFound };
    const data = q.items.shift();
    if (data === undefined) return { result: WasmResult.Empty };
    return { result: WasmResult.Ok, data };
  }

  enqueue(token: number, data: Uint8Array): number {
    const q = this.queues.get(token);
    if (!q) return WasmResult.NotFound;
    q.items.push(data);
    q.owner.notify(token);
    return WasmResult.Ok;
  }

  /** Pending item count, for assertions. */
  depth(vmId: string, name: string): number | undefined {
    const t = this.resolve(vmId, name);
    return t ? this.queues.get(t)!.items.length : undefined;
  }
}
