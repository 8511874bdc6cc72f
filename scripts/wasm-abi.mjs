// What proxy-wasm-cpp-host (the host inside Envoy) provides to a module that declares
// ABI 0.2.1: the host functions of FOR_ALL_HOST_FUNCTIONS plus the 0.2.1-specific ones, and the
// WASI functions of FOR_ALL_WASI_FUNCTIONS under wasi_snapshot_preview1 and wasi_unstable
// (include/proxy-wasm/exports.h, src/wasm.cc registerCallbacks). A module importing anything
// else fails to load in Envoy.

export const HOST_FUNCTIONS = [
  "log", "get_status", "set_property", "get_property", "send_local_response", "get_shared_data",
  "set_shared_data", "register_shared_queue", "resolve_shared_queue", "dequeue_shared_queue",
  "enqueue_shared_queue", "get_header_map_value", "add_header_map_value", "replace_header_map_value",
  "remove_header_map_value", "get_header_map_pairs", "set_header_map_pairs", "get_header_map_size",
  "get_buffer_status", "get_buffer_bytes", "set_buffer_bytes", "http_call", "grpc_call", "grpc_stream",
  "grpc_close", "grpc_cancel", "grpc_send", "set_tick_period_milliseconds",
  "get_current_time_nanoseconds", "define_metric", "increment_metric", "record_metric", "get_metric",
  "set_effective_context", "done", "call_foreign_function",
];

export const HOST_FUNCTIONS_0_2_1 = ["continue_stream", "close_stream", "get_log_level"];

export const WASI_FUNCTIONS = [
  "fd_write", "fd_read", "fd_seek", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
  "fd_fdstat_set_rights", "environ_get", "environ_sizes_get", "args_get", "args_sizes_get",
  "clock_time_get", "clock_res_get", "fd_advise", "fd_allocate", "fd_datasync", "fd_filestat_set_size",
  "fd_filestat_set_times", "fd_pread", "fd_pwrite", "fd_readdir", "fd_renumber", "fd_sync", "fd_tell",
  "path_create_directory", "path_filestat_set_times", "path_link", "path_readlink",
  "path_remove_directory", "path_rename", "path_symlink", "path_unlink_file", "sock_accept", "sock_recv",
  "sock_send", "sock_shutdown", "random_get", "sched_yield", "poll_oneoff", "proc_exit", "path_open",
  "fd_prestat_get", "fd_prestat_dir_name", "path_filestat_get", "fd_filestat_get",
];

export function allowedImports() {
  const allowed = new Set();
  for (const f of [...HOST_FUNCTIONS, ...HOST_FUNCTIONS_0_2_1]) allowed.add(`env.proxy_${f}`);
  for (const f of WASI_FUNCTIONS) {
    allowed.add(`wasi_snapshot_preview1.${f}`);
    allowed.add(`wasi_unstable.${f}`);
  }
  return allowed;
}

// Problems with a compiled module as Envoy would see them; [] when it is fine.
export function checkModule(bytes) {
  const mod = new WebAssembly.Module(bytes);
  const allowed = allowedImports();
  const problems = [];
  for (const imp of WebAssembly.Module.imports(mod)) {
    const name = `${imp.module}.${imp.name}`;
    if (imp.kind !== "function" || !allowed.has(name)) problems.push(`imports ${imp.kind} ${name}, which proxy-wasm-cpp-host does not provide for ABI 0.2.1`);
  }
  const exports = new Set(WebAssembly.Module.exports(mod).map((e) => e.name));
  for (const need of ["proxy_abi_version_0_2_1", "malloc", "memory", "_initialize", "proxy_on_context_create", "proxy_on_request_headers"]) {
    if (!exports.has(need)) problems.push(`does not export ${need}`);
  }
  return problems;
}
