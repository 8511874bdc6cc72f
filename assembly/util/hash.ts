// FNV-1a, 32 bits: a cheap stable identity for short ASCII strings (endpoint addresses).
export function fnv1a32(s: string): u32 {
  let h: u32 = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= <u32>s.charCodeAt(i);
    h *= 0x01000193;
  }
  return h;
}
