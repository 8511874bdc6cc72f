// JSON string quoting for the few documents the filter writes (errors, rewritten model names).

const HEX = "0123456789abcdef";

export function quote(s: string): string {
  let out = "\"";
  let run = 0; // start of the current run of characters that need no escaping
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += s.substring(run, i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else out += "\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15);
    run = i + 1;
  }
  out += s.substring(run);
  return out + "\"";
}
