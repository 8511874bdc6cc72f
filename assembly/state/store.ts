// The routing state in shared data: written by the push endpoint, read by every worker VM.
//
// "wasm-epp/state" holds a 16-byte header (f64 generated_at_ms, f64 version) followed by the
// document exactly as pushed; it is replaced with compare-and-swap so that an older document
// never overwrites a newer one. "wasm-epp/state-meta" is rewritten after every store and is only
// a change signal: a worker reads that small key per request and decodes the large one only when
// its CAS token moved. Reading shared data copies the value into the VM, so this keeps the
// per-request cost independent of the document's size.

import { SharedStore } from "../util/store";
import { decodeStateAt, State } from "./document";

export const STATE_KEY = "wasm-epp/state";
export const META_KEY = "wasm-epp/state-meta";
const HEADER: i32 = 16;

export const STORED: i32 = 0;
export const CONFLICT: i32 = 409;
export const BUSY: i32 = 503;

export class StoreResult {
  status: i32 = STORED;
  storedGeneratedAt: f64 = 0;
}

// Stores a validated document unless the stored one is newer (409).
export function storeState(shared: SharedStore, doc: ArrayBuffer, generatedAtMs: f64, version: f64): StoreResult {
  const r = new StoreResult();
  const value = new ArrayBuffer(HEADER + doc.byteLength);
  const p = changetype<usize>(value);
  store<f64>(p, generatedAtMs);
  store<f64>(p, version, 8);
  memory.copy(p + HEADER, changetype<usize>(doc), <usize>doc.byteLength);
  for (let attempt = 0; attempt < 8; attempt++) {
    const current = shared.get(STATE_KEY);
    const cas = shared.cas;
    if (current !== null && current.byteLength >= HEADER) {
      const stored = load<f64>(changetype<usize>(current));
      if (stored > generatedAtMs) {
        r.status = CONFLICT;
        r.storedGeneratedAt = stored;
        return r;
      }
    }
    if (shared.set(STATE_KEY, value, cas)) {
      const meta = new ArrayBuffer(16);
      store<f64>(changetype<usize>(meta), generatedAtMs);
      store<f64>(changetype<usize>(meta), version, 8);
      shared.set(META_KEY, meta, 0);
      return r;
    }
  }
  r.status = BUSY;
  return r;
}

// The stored document as pushed (for GET on the push endpoint), or null.
export function storedDocument(shared: SharedStore): ArrayBuffer | null {
  const current = shared.get(STATE_KEY);
  if (current === null || current.byteLength < HEADER) return null;
  return current.slice(HEADER);
}

// One worker's decoded copy of the state.
export class StateCache {
  store: SharedStore;
  maxEndpoints: i32;
  state: State | null = null;
  private metaCas: u32 = 0;
  lastError: string = "";

  constructor(store: SharedStore, maxEndpoints: i32) {
    this.store = store;
    this.maxEndpoints = maxEndpoints;
  }

  // Re-reads the state if it changed. Returns 1 when a newer state was loaded, -1 when a stored
  // state could not be decoded (the previous one is kept), 0 otherwise.
  refresh(): i32 {
    const meta = this.store.get(META_KEY);
    if (meta === null) return 0;
    const cas = this.store.cas;
    if (cas == this.metaCas && this.state !== null) return 0;
    const value = this.store.get(STATE_KEY);
    if (value === null || value.byteLength < HEADER) return 0;
    this.metaCas = cas;
    const decoded = decodeStateAt(changetype<usize>(value) + HEADER, value.byteLength - HEADER, this.maxEndpoints);
    if (decoded.state === null) {
      this.lastError = decoded.error;
      return -1;
    }
    this.state = decoded.state;
    return 1;
  }
}
