// Numbers for messages: integers without a fractional part, others as they are.
export function formatNumber(v: f64): string {
  if (isFinite(v) && v == Math.floor(v) && Math.abs(v) < 9e15) return (<i64>v).toString();
  return v.toString();
}

// A header's decimal value (content-length): -1 when it is not one, Infinity past 18 digits.
export function parseDecimal(s: string): f64 {
  let v: f64 = 0;
  const t = s.trim();
  if (t.length == 0 || t.length > 18) return t.length > 18 ? Infinity : -1;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    v = v * 10 + <f64>(c - 0x30);
  }
  return v;
}
