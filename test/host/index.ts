// Public entry point of the proxy-wasm host emulation (see README.md).

export { ProxyWasmHost, type HostOptions, type SharedDataView, type ViolationRecord } from './host.ts';
export { Plugin, Worker, type PluginOptions, type StreamOptions } from './plugin.ts';
export { HttpStream, Received, type LocalReply } from './http-stream.ts';
export type { RequestOptions, RequestResult, UpstreamResult, LocalResult, UpstreamResponse } from './request.ts';
export {
  parseIpPort, upstreamResetBeforeHeaders, UPSTREAM_TIMEOUT_REPLY, ORIGINAL_DST_DEFAULT_HEADER,
  type ClusterDecl, type ClusterSpec, type ClusterType, type HttpCallHandler, type HttpCallRequest, type HttpCallReply,
} from './http-call.ts';
export type { LogEntry, LogSink, WorkerLabel } from './logs.ts';
export { formatLogLine } from './logs.ts';
export type { MetricSnapshot, MetricKind } from './metrics.ts';
export type { PropertyValue } from './properties.ts';
export { HeaderMap, type HeaderInput } from './header-map.ts';
export { encodePairs, type Pair, type Pairs } from './pairs.ts';
export { WasmLoadError, HostTrap, type TrapRecord } from './vm.ts';
export { ManualClock, RealClock, type Clock } from './clock.ts';
export {
  WasmResult, HeaderMapType, BufferType, StreamType, LogLevel, FilterHeadersStatus, FilterDataStatus,
  FilterTrailersStatus, MetricType, FailState, type AbiVersion, type LogLevelName,
} from './abi.ts';
