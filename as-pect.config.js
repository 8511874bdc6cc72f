// as-pect: unit specs of the filter's plain logic (test/unit/*.spec.ts). The modules under test
// never call the host, so no proxy-wasm imports are needed here; the full module is exercised
// through test/host in the integration tests.
export default {
  entries: ["test/unit/**/*.spec.ts"],
  include: [],
  disclude: [/node_modules/],
  async instantiate(memory, createImports, instantiate, binary) {
    return instantiate(binary, createImports({ env: { memory } }));
  },
  outputBinary: false,
};
