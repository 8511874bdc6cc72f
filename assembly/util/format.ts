// Numbers for messages: integers without a fractional part, others as they are.
export function formatNumber(v: f64): string {
  if (isFinite(v) && v == Math.floor(v) && Math.abs(v) < 9e15) return (<i64>v).toString();
  return v.toString();
}
