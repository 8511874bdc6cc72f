// wasm-epp: an inference-aware endpoint picker as a proxy-wasm HTTP filter.
// Registers the root context under the root id "wasm-epp" (root_id in Envoy, rootID in
// Envoy Gateway) and exports the proxy-wasm ABI from the SDK.

export * from "@solo-io/proxy-runtime/assembly/proxy";
import { RootContext, registerRootContext } from "@solo-io/proxy-runtime/assembly";
import { EppRoot } from "./filter";

const ROOT_ID = "wasm-epp";

registerRootContext((id: u32): RootContext => new EppRoot(id), ROOT_ID);
