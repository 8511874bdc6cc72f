// The `name[]` query parameter as Python's prometheus_client exposition app answers it (vLLM and
// SGLang serve /metrics with that client), for the simulator and the fake model servers.
//
//   - The query is read like urllib's parse_qs: pairs split on "&", "+" is a space, keys and
//     values are percent-decoded, pairs without "=" or with an empty value are dropped. Only the
//     key "name[]" counts ("name" does not); each value is one name (a comma is part of it).
//     No usable name[]: the whole page.
//   - With names, a family is kept only with its samples whose name is one of them: names are
//     sample names (a counter's "x_total", a histogram's "x_bucket", "x_sum", "x_count"; a gauge's
//     samples carry the family name). A family left without samples is left out whole, HELP and
//     TYPE included. Unknown names match nothing; nothing matched is an empty page.
//   - A server whose registry is a bare multiprocess collector (SGLang; vLLM with several API
//     processes) registers no names, so recent clients answer every name[] request with an empty
//     page: mode "multiprocess".
//   - vLLM's GET /metrics is answered by prometheus-fastapi-instrumentator, which ignores the
//     parameter: mode "ignore".

export type NameFilterMode = "honour" | "ignore" | "multiprocess";

// The name[] values of a request URL ("/metrics?name%5B%5D=a&name[]=b"), or undefined when it has
// none (the whole page).
export function nameParams(url: string): string[] | undefined {
  const q = url.indexOf("?");
  if (q < 0) return undefined;
  const names: string[] = [];
  for (const pair of url.slice(q + 1).split("&")) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(pair.slice(0, eq).replace(/\+/g, " "));
      value = decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, " "));
    } catch {
      continue; // parse_qs keeps malformed escapes as they are; such a key is not name[] anyway
    }
    if (key === "name[]" && value.length > 0) names.push(value);
  }
  return names.length > 0 ? names : undefined;
}

// The page a prometheus_client app serves for `url`, given the whole page in text format 0.0.4.
export function answerFor(url: string, page: string, mode: NameFilterMode = "honour"): string {
  const names = nameParams(url);
  if (names === undefined || mode === "ignore") return page;
  if (mode === "multiprocess") return "";
  return restrict(page, new Set(names));
}

// The page with only the samples named in `names`, each with its family's HELP and TYPE lines.
export function restrict(page: string, names: Set<string>): string {
  const out: string[] = [];
  let header: string[] = [];
  let kept: string[] = [];
  let samples = false; // sample lines seen since the family's comments
  const flush = () => {
    if (kept.length > 0) out.push(...header, ...kept);
    header = [];
    kept = [];
    samples = false;
  };
  for (const line of page.split("\n")) {
    if (line.length === 0) continue;
    if (line.startsWith("#")) {
      // A HELP line opens a family, and so does a TYPE line that follows samples or opens the page.
      if (line.startsWith("# HELP ") || samples) flush();
      header.push(line);
      continue;
    }
    samples = true;
    const end = line.search(/[{ \t]/);
    if (names.has(end < 0 ? line : line.slice(0, end))) kept.push(line);
  }
  flush();
  return out.length > 0 ? out.join("\n") + "\n" : "";
}
