// VMs that Envoy considers interchangeable: same vm_id, same vm configuration,
// same code (cpp-host's vm_key). Plugins whose configs share a vm_key run in
// the SAME worker VMs (one root context per plugin inside each), so module
// globals are shared between those plugins, and all of them see the same
// shared data because that is keyed by vm_id alone.

import { createHash } from 'node:crypto';
import type { AbiVersion } from './abi.ts';
import { FailState } from './abi.ts';
import type { ProxyWasmHost } from './host.ts';
import { readModuleShape, type ModuleShape } from './wasm-binary.ts';
import { WasmLoadError, WasmVm } from './vm.ts';

export function vmKey(vmId: string, vmConfiguration: Uint8Array, code: Uint8Array): string {
  const h = createHash('sha256');
  h.update(vmId);
  h.update('||');
  h.update(vmConfiguration);
  h.update('||');
  h.update(code);
  return h.digest('hex');
}

export class VmGroup {
  readonly shape: ModuleShape;
  readonly abi: AbiVersion;
  readonly module: WebAssembly.Module;
  /** The base VM Envoy creates first (initialized, never started). */
  base: WasmVm | null = null;
  readonly workers: WasmVm[] = [];

  constructor(
    readonly host: ProxyWasmHost,
    readonly key: string,
    readonly vmId: string,
    readonly vmConfiguration: Uint8Array,
    readonly env: ReadonlyArray<[string, string]>,
    code: Uint8Array,
  ) {
    let shape: ModuleShape;
    try {
      shape = readModuleShape(code);
    } catch (err) {
      throw new WasmLoadError(`Failed to parse corrupted Wasm module: ${(err as Error).message}`, FailState.UnableToInitializeCode);
    }
    if (!shape.abi) throw new WasmLoadError('Missing or unknown Proxy-Wasm ABI version', FailState.UnableToInitializeCode);
    this.shape = shape;
    this.abi = shape.abi;
    try {
      this.module = new WebAssembly.Module(code as Uint8Array<ArrayBuffer>);
    } catch (err) {
      throw new WasmLoadError(`Failed to load Wasm bytecode: ${(err as Error).message}`, FailState.UnableToInitializeCode);
    }
  }

  /** A fresh, initialized instance (throws WasmLoadError like cpp-host's initialize()). */
  instantiate(label: WasmVm['label']): WasmVm {
    const vm = new WasmVm(this, label);
    vm.initialize();
    return vm;
  }
}
