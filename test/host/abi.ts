// Proxy-Wasm ABI constants and the exact import/export surface that
// proxy-wasm-cpp-host (as embedded in Envoy) offers to a module.
//
// Numbers follow proxy_wasm_common.h / proxy_wasm_enums.h of the C++ SDK, which
// cpp-host includes verbatim. The import tables mirror FOR_ALL_HOST_FUNCTIONS,
// FOR_ALL_HOST_FUNCTIONS_ABI_SPECIFIC and FOR_ALL_WASI_FUNCTIONS in
// include/proxy-wasm/exports.h, with the Wasm signatures produced by
// ConvertFunctionWordToUint32 (Word -> i32, int64_t/uint64_t -> i64).

export const WasmResult = {
  Ok: 0,
  NotFound: 1,
  BadArgument: 2,
  SerializationFailure: 3,
  ParseFailure: 4,
  BadExpression: 5,
  InvalidMemoryAccess: 6,
  Empty: 7,
  CasMismatch: 8,
  ResultMismatch: 9,
  InternalFailure: 10,
  BrokenConnection: 11,
  Unimplemented: 12,
} as const;
export type WasmResultCode = (typeof WasmResult)[keyof typeof WasmResult];

export const HeaderMapType = {
  RequestHeaders: 0,
  RequestTrailers: 1,
  ResponseHeaders: 2,
  ResponseTrailers: 3,
  GrpcReceiveInitialMetadata: 4,
  GrpcReceiveTrailingMetadata: 5,
  HttpCallResponseHeaders: 6,
  HttpCallResponseTrailers: 7,
  MAX: 7,
} as const;

export const BufferType = {
  HttpRequestBody: 0,
  HttpResponseBody: 1,
  NetworkDownstreamData: 2,
  NetworkUpstreamData: 3,
  HttpCallResponseBody: 4,
  GrpcReceiveBuffer: 5,
  VmConfiguration: 6,
  PluginConfiguration: 7,
  CallData: 8,
  MAX: 8,
} as const;

export const StreamType = { Request: 0, Response: 1, Downstream: 2, Upstream: 3, MAX: 3 } as const;

/** spdlog / proxy-wasm log levels; `off` (6) is only ever returned by get_log_level. */
export const LogLevel = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5, off: 6 } as const;
export type LogLevelName = keyof typeof LogLevel;
export const LOG_LEVEL_NAMES: readonly LogLevelName[] = ['trace', 'debug', 'info', 'warn', 'error', 'critical', 'off'];
/** cpp-host rejects proxy_log levels above LogLevel::Max (= critical). */
export const LOG_LEVEL_MAX = 5;

export const FilterHeadersStatus = {
  Continue: 0,
  StopIteration: 1,
  ContinueAndEndStream: 2,
  StopAllIterationAndBuffer: 3,
  StopAllIterationAndWatermark: 4,
} as const;
export const FilterDataStatus = {
  Continue: 0,
  StopIterationAndBuffer: 1,
  StopIterationAndWatermark: 2,
  StopIterationNoBuffer: 3,
} as const;
export const FilterTrailersStatus = { Continue: 0, StopIteration: 1 } as const;

export const MetricType = { Counter: 0, Gauge: 1, Histogram: 2, Max: 2 } as const;

export const FailState = {
  Ok: 0,
  UnableToCreateVm: 1,
  UnableToCloneVm: 2,
  MissingFunction: 3,
  UnableToInitializeCode: 4,
  StartFailed: 5,
  ConfigureFailed: 6,
  RuntimeError: 7,
} as const;
export type FailStateCode = (typeof FailState)[keyof typeof FailState];
export const FAIL_STATE_NAMES = [
  'Ok', 'UnableToCreateVm', 'UnableToCloneVm', 'MissingFunction',
  'UnableToInitializeCode', 'StartFailed', 'ConfigureFailed', 'RuntimeError',
] as const;

export type AbiVersion = '0.1.0' | '0.2.0' | '0.2.1';
export const ABI_EXPORTS: ReadonlyArray<[string, AbiVersion]> = [
  ['proxy_abi_version_0_1_0', '0.1.0'],
  ['proxy_abi_version_0_2_0', '0.2.0'],
  ['proxy_abi_version_0_2_1', '0.2.1'],
];

/** Compact signature notation: params then `>` then results, e.g. "iii>i". */
export type Sig = string;

// env.proxy_* registered for every ABI version (FOR_ALL_HOST_FUNCTIONS).
export const PROXY_HOST_FUNCTIONS: Readonly<Record<string, Sig>> = {
  proxy_log: 'iii>i',
  proxy_get_status: 'iii>i',
  proxy_set_property: 'iiii>i',
  proxy_get_property: 'iiii>i',
  proxy_send_local_response: 'iiiiiiii>i',
  proxy_get_shared_data: 'iiiii>i',
  proxy_set_shared_data: 'iiiii>i',
  proxy_register_shared_queue: 'iii>i',
  proxy_resolve_shared_queue: 'iiiii>i',
  proxy_dequeue_shared_queue: 'iii>i',
  proxy_enqueue_shared_queue: 'iii>i',
  proxy_get_header_map_value: 'iiiii>i',
  proxy_add_header_map_value: 'iiiii>i',
  proxy_replace_header_map_value: 'iiiii>i',
  proxy_remove_header_map_value: 'iii>i',
  proxy_get_header_map_pairs: 'iii>i',
  proxy_set_header_map_pairs: 'iii>i',
  proxy_get_header_map_size: 'ii>i',
  proxy_get_buffer_status: 'iii>i',
  proxy_get_buffer_bytes: 'iiiii>i',
  proxy_set_buffer_bytes: 'iiiii>i',
  proxy_http_call: 'iiiiiiiiii>i',
  proxy_grpc_call: 'iiiiiiiiiiii>i',
  proxy_grpc_stream: 'iiiiiiiii>i',
  proxy_grpc_close: 'i>i',
  proxy_grpc_cancel: 'i>i',
  proxy_grpc_send: 'iiii>i',
  proxy_set_tick_period_milliseconds: 'i>i',
  proxy_get_current_time_nanoseconds: 'i>i',
  proxy_define_metric: 'iiii>i',
  proxy_increment_metric: 'iI>i',
  proxy_record_metric: 'iI>i',
  proxy_get_metric: 'ii>i',
  proxy_set_effective_context: 'i>i',
  proxy_done: '>i',
  proxy_call_foreign_function: 'iiiiii>i',
};

// env.proxy_* that exist only for some ABI versions (registerCallbacks in src/wasm.cc).
export const PROXY_ABI_SPECIFIC: Readonly<Record<AbiVersion, Readonly<Record<string, Sig>>>> = {
  '0.1.0': {
    proxy_get_configuration: 'ii>i',
    proxy_continue_request: '>i',
    proxy_continue_response: '>i',
    proxy_clear_route_cache: '>i',
  },
  '0.2.0': { proxy_continue_stream: 'i>i', proxy_close_stream: 'i>i' },
  '0.2.1': { proxy_continue_stream: 'i>i', proxy_close_stream: 'i>i', proxy_get_log_level: 'i>i' },
};

// Other env.* functions: two emscripten helpers from cpp-host, one Envoy extension.
export const ENV_EXTRA_FUNCTIONS: Readonly<Record<string, Sig>> = {
  pthread_equal: 'ii>i',
  emscripten_notify_memory_growth: 'i>',
  envoy_resolve_dns: 'iii>i',
};

// Both `wasi_unstable` and `wasi_snapshot_preview1` get this same list, with
// cpp-host's own parameter lists (path_link and path_symlink are shorter than
// the WASI spec's, so modules importing the spec signatures fail to link on
// Envoy too).
export const WASI_FUNCTIONS: Readonly<Record<string, Sig>> = {
  fd_write: 'iiii>i',
  fd_read: 'iiii>i',
  fd_seek: 'iIii>i',
  fd_close: 'i>i',
  fd_fdstat_get: 'ii>i',
  fd_fdstat_set_flags: 'ii>i',
  fd_fdstat_set_rights: 'iII>i',
  environ_get: 'ii>i',
  environ_sizes_get: 'ii>i',
  args_get: 'ii>i',
  args_sizes_get: 'ii>i',
  clock_time_get: 'iIi>i',
  clock_res_get: 'ii>i',
  fd_advise: 'iIIi>i',
  fd_allocate: 'iII>i',
  fd_datasync: 'i>i',
  fd_filestat_set_size: 'iI>i',
  fd_filestat_set_times: 'iIIi>i',
  fd_pread: 'iiiIi>i',
  fd_pwrite: 'iiiIi>i',
  fd_readdir: 'iiiIi>i',
  fd_renumber: 'ii>i',
  fd_sync: 'i>i',
  fd_tell: 'ii>i',
  path_create_directory: 'iii>i',
  path_filestat_set_times: 'iiiiIIi>i',
  path_link: 'iiiiii>i',
  path_readlink: 'iiiiii>i',
  path_remove_directory: 'iii>i',
  path_rename: 'iiiiii>i',
  path_symlink: 'iiii>i',
  path_unlink_file: 'iii>i',
  sock_accept: 'iii>i',
  sock_recv: 'iiiiii>i',
  sock_send: 'iiiii>i',
  sock_shutdown: 'ii>i',
  random_get: 'ii>i',
  sched_yield: '>i',
  poll_oneoff: 'iiii>i',
  proc_exit: 'i>',
  path_open: 'iiiiiIIii>i',
  fd_prestat_get: 'ii>i',
  fd_prestat_dir_name: 'iii>i',
  path_filestat_get: 'iiiii>i',
  fd_filestat_get: 'ii>i',
};
export const WASI_MODULES = ['wasi_unstable', 'wasi_snapshot_preview1'] as const;

/** The full `module.name -> signature` table cpp-host + Envoy register for an ABI version. */
export function providedImports(abi: AbiVersion): Map<string, Sig> {
  const out = new Map<string, Sig>();
  for (const [n, s] of Object.entries(ENV_EXTRA_FUNCTIONS)) out.set(`env.${n}`, s);
  for (const m of WASI_MODULES) for (const [n, s] of Object.entries(WASI_FUNCTIONS)) out.set(`${m}.${n}`, s);
  for (const [n, s] of Object.entries(PROXY_HOST_FUNCTIONS)) out.set(`env.${n}`, s);
  for (const [n, s] of Object.entries(PROXY_ABI_SPECIFIC[abi])) out.set(`env.${n}`, s);
  return out;
}

// Module exports cpp-host looks up, with the signature it insists on
// (WasmCallVoid<N> = N x i32 -> (), WasmCallWord<N> = N x i32 -> i32).
// A present export with another signature fails the VM (UnableToInitializeCode).
export const MODULE_FUNCTIONS: Readonly<Record<string, Sig>> = {
  _initialize: '>',
  _start: '>',
  main: 'ii>i',
  __main_void: '>i',
  malloc: 'i>i',
  proxy_on_memory_allocate: 'i>i',
  proxy_validate_configuration: 'ii>i',
  proxy_on_vm_start: 'ii>i',
  proxy_on_configure: 'ii>i',
  proxy_on_tick: 'i>',
  proxy_on_context_create: 'ii>',
  proxy_on_new_connection: 'i>i',
  proxy_on_downstream_data: 'iii>i',
  proxy_on_upstream_data: 'iii>i',
  proxy_on_downstream_connection_close: 'ii>',
  proxy_on_upstream_connection_close: 'ii>',
  proxy_on_request_body: 'iii>i',
  proxy_on_request_trailers: 'ii>i',
  proxy_on_request_metadata: 'ii>i',
  proxy_on_response_body: 'iii>i',
  proxy_on_response_trailers: 'ii>i',
  proxy_on_response_metadata: 'ii>i',
  proxy_on_http_call_response: 'iiiii>',
  proxy_on_grpc_receive: 'iii>',
  proxy_on_grpc_close: 'iii>',
  proxy_on_grpc_receive_initial_metadata: 'iii>',
  proxy_on_grpc_receive_trailing_metadata: 'iii>',
  proxy_on_queue_ready: 'ii>',
  proxy_on_done: 'i>i',
  proxy_on_log: 'i>',
  proxy_on_delete: 'i>',
  envoy_on_resolve_dns: 'iii>',
  envoy_on_stats_update: 'ii>',
};
export const HEADERS_CALLBACK_SIG: Readonly<Record<AbiVersion, Sig>> = {
  '0.1.0': 'ii>i',
  '0.2.0': 'iii>i',
  '0.2.1': 'iii>i',
};

// Host calls allowed while `_initialize`/`_start`/`main` run (WasmBase::startVm);
// anything else traps with "restricted_callback".
const INIT_WASI_ALLOWED = [
  'fd_write', 'args_sizes_get', 'args_get', 'environ_sizes_get', 'environ_get', 'clock_time_get',
  'clock_res_get', 'random_get', 'poll_oneoff', 'fd_fdstat_get', 'fd_fdstat_set_flags', 'fd_advise',
  'fd_allocate', 'fd_datasync', 'fd_fdstat_set_rights', 'fd_filestat_get', 'fd_filestat_set_size',
  'fd_filestat_set_times', 'fd_pread', 'fd_prestat_dir_name', 'fd_prestat_get', 'fd_pwrite',
  'fd_readdir', 'fd_renumber', 'fd_sync', 'fd_tell', 'path_create_directory', 'path_filestat_get',
  'path_filestat_set_times', 'path_link', 'path_readlink', 'path_remove_directory', 'path_rename',
  'path_symlink', 'path_unlink_file', 'sock_accept', 'sock_recv', 'sock_send', 'sock_shutdown',
];
export const ALLOWED_DURING_INIT: ReadonlySet<string> = new Set([
  'env.emscripten_notify_memory_growth',
  'env.proxy_log',
  ...WASI_MODULES.flatMap((m) => INIT_WASI_ALLOWED.map((f) => `${m}.${f}`)),
]);
// Host calls allowed while the host runs the module's allocator (WasmBase::allocMemory).
export const ALLOWED_DURING_MALLOC: ReadonlySet<string> = new Set([
  'env.proxy_log',
  ...WASI_MODULES.flatMap((m) => ['fd_write', 'clock_time_get', 'poll_oneoff'].map((f) => `${m}.${f}`)),
]);

// cpp-host limits (include/proxy-wasm/limits.h).
export const PAIRS_MAX_BYTES = 1024 * 1024;
export const PAIRS_MAX_COUNT = 1024;
export const RANDOM_GET_MAX_BYTES = 64 * 1024;

// WASI errno values cpp-host returns.
export const Errno = {
  SUCCESS: 0,
  BADF: 8,
  NOTDIR: 20,
  FAULT: 21,
  INVAL: 28,
  NOENT: 44,
  NOSYS: 52,
  NOTSUP: 58,
} as const;

/** Envoy's prefix for every stat defined through proxy_define_metric (stats_handler.h). */
export const CUSTOM_STAT_NAMESPACE = 'wasmcustom';
