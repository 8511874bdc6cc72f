// proxy-wasm shared data behind the SharedStore interface.

import { SharedStore } from "./util/store";
import { getShared, setShared, Shared, OK } from "./host";

export class HostStore extends SharedStore {
  private out: Shared = new Shared();

  get(key: string): ArrayBuffer | null {
    const r = getShared(key, this.out);
    this.cas = r.cas;
    return r.result == OK ? r.value : null;
  }

  set(key: string, value: ArrayBuffer, cas: u32): bool {
    return setShared(key, value, cas) == OK;
  }
}
