// Bearer token check for the push endpoint.

// Compares "Bearer <token>" in time that depends only on the lengths, not on where they differ.
export function bearerMatches(header: string, token: string): bool {
  if (token.length == 0) return false;
  const prefix = "Bearer ";
  if (header.length < prefix.length) return false;
  let diff = 0;
  for (let i = 0; i < prefix.length; i++) {
    const a = header.charCodeAt(i);
    const b = prefix.charCodeAt(i);
    // Scheme is case-insensitive.
    diff |= (a | 0x20) ^ (b | 0x20);
  }
  const given = header.substring(prefix.length);
  diff |= given.length ^ token.length;
  const n = given.length > token.length ? given.length : token.length;
  for (let i = 0; i < n; i++) {
    const a = i < given.length ? given.charCodeAt(i) : 0;
    const b = i < token.length ? token.charCodeAt(i) : 0;
    diff |= a ^ b;
  }
  return diff == 0;
}
