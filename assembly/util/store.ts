// Shared data as the logic sees it: get with a CAS token, set that fails on a CAS mismatch.
// The host implementation (shared.ts) is proxy-wasm shared data, keyed by vm_id and shared by
// every worker VM; MemoryStore stands in for it in unit tests.

export abstract class SharedStore {
  // CAS token of the last successful get (0 after a miss).
  cas: u32 = 0;

  abstract get(key: string): ArrayBuffer | null;

  // cas 0 writes unconditionally; otherwise the write fails when the key changed since.
  abstract set(key: string, value: ArrayBuffer, cas: u32): bool;
}

class Entry {
  value: ArrayBuffer;
  cas: u32;

  constructor(value: ArrayBuffer, cas: u32) {
    this.value = value;
    this.cas = cas;
  }
}

export class MemoryStore extends SharedStore {
  private map: Map<string, Entry> = new Map<string, Entry>();
  private nextCas: u32 = 1;
  writes: i32 = 0;

  get(key: string): ArrayBuffer | null {
    if (!this.map.has(key)) {
      this.cas = 0;
      return null;
    }
    const e = this.map.get(key);
    this.cas = e.cas;
    return e.value.slice(0);
  }

  set(key: string, value: ArrayBuffer, cas: u32): bool {
    if (this.map.has(key)) {
      const e = this.map.get(key);
      if (cas != 0 && cas != e.cas) return false;
    }
    this.map.set(key, new Entry(value.slice(0), this.nextCas++));
    this.writes++;
    return true;
  }

  get size(): i32 {
    return this.map.size;
  }
}
