import { xxh64String } from "../../assembly/prefix/xxhash64";

// Known answers computed with the xxhash-wasm package (the reference C implementation).
describe("xxh64", () => {
  it("matches the reference for inputs of every length class", () => {
    expect(xxh64String("")).toBe(0xef46db3751d8e999);
    expect(xxh64String("a")).toBe(0xd24ec4f1a98c6e5b);
    expect(xxh64String("abc")).toBe(0x44bc2cf5ad770999);
    expect(xxh64String("Nobody inspects the spammish repetition")).toBe(0xfbcea83c8a378bf1);
    expect(xxh64String("0123456789abcdef0123456789abcdef")).toBe(0x642a94958e71e6c5);
    expect(xxh64String("The quick brown fox jumps over the lazy dog, 64 bytes of text!!!")).toBe(0x1f1b8f7701b1f5d1);
    expect(xxh64String("x".repeat(100))).toBe(0x92f0de5a88a3c094);
  });

  it("honours the seed", () => {
    expect(xxh64String("", 42)).toBe(0x98b1582b0977e704);
    expect(xxh64String("abc", 42)).toBe(0x13c1d910702770e6);
    expect(xxh64String("Nobody inspects the spammish repetition", 42)).toBe(0x44582824ca1018b5);
    expect(xxh64String("x".repeat(100), 42)).toBe(0x0513559782e486c7);
  });
});
