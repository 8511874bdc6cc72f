// Envoy's tag extraction (bootstrap stats_config.stats_tags): from a stat's full name, the
// tag-extracted name and the tags, as Envoy's TagProducerImpl computes them when a stat is
// created (source/common/stats/tag_producer_impl.cc, tag_extractor_impl.cc).
//
// Semantics implemented:
//  - A specifier with a regex is a std::regex (ECMAScript grammar) searched anywhere in the full
//    name (`wasmcustom.<name>` for the filter's metrics), unanchored. It needs at least one
//    capture group: group 1 is the part removed from the name, group 2 (if the regex has one)
//    the tag's value, else group 1's text. Other groups are ignored.
//  - Every extractor runs on the original full name; the removed ranges of all matches are
//    united and cut out at the end (so the order of removal does not matter).
//  - Order of the tags: extractors whose regex has no literal first token (`^word\.`) run
//    first, in configuration order; then those keyed by the name's first token. The contract's
//    four regexes have no such prefix, so the tags come in stats_tags order.
//  - When several extractors share a tag name, only the first that matches adds a tag.
//  - `fixed_value` adds a constant tag to every stat.
//  - An empty regex names a built-in extractor.
//
// Envoy's built-in ("default") extractors, on by default (`use_all_default_tags`), are mostly
// anchored on Envoy's own prefixes (`cluster.`, `http.`, `listener.` ...). Of them this host
// implements only `envoy.cluster_name` (`cluster.<name>.` removed), the only one any stat the
// host creates can match (the ORIGINAL_DST cluster's counters). It deliberately does not
// implement the two unanchored suffix extractors, `envoy.response_code` (`_rq_<3 digits>` at the
// end of a name) and `envoy.response_code_class` (`_rq_<digit>xx`): here a `wasmcustom.*` name
// keeps such a suffix. A real Envoy with default tags would extract them from the filter's names
// too (`wasmcustom.foo_rq_200` -> `foo_rq{envoy_response_code="200"}`), so metric names must not
// end that way.
//
// Regexes: std::regex's ECMAScript grammar is close to JavaScript's. POSIX classes inside
// brackets (`[[:digit:]]`) are translated; everything else is handed to RegExp as is, so a
// pattern only JavaScript accepts (lookbehind, named groups) is accepted here but would be
// rejected by Envoy.

export interface TagSpecifier {
  tag_name: string;
  regex?: string;
  fixed_value?: string;
}

export interface Tag {
  name: string;
  value: string;
}

export interface ExtractedName {
  /** The name with every tag's removed part cut out (Envoy's tagExtractedName). */
  name: string;
  tags: Tag[];
}

const POSIX_CLASSES: Record<string, string> = {
  alnum: 'a-zA-Z0-9',
  alpha: 'a-zA-Z',
  blank: ' \\t',
  cntrl: '\\x00-\\x1f\\x7f',
  digit: '0-9',
  d: '0-9',
  graph: '\\x21-\\x7e',
  lower: 'a-z',
  print: '\\x20-\\x7e',
  punct: '!-\\/:-@\\[-`{-~',
  space: '\\s',
  s: '\\s',
  upper: 'A-Z',
  w: '\\w',
  xdigit: '0-9A-Fa-f',
};

/** A std::regex (ECMAScript grammar) pattern as a JavaScript RegExp with match indices. */
export function ecmaScriptRegExp(pattern: string): RegExp {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      out += pattern.slice(i, i + 2);
      i++;
      continue;
    }
    if (inClass) {
      if (c === '[' && pattern[i + 1] === ':') {
        const end = pattern.indexOf(':]', i + 2);
        const name = end < 0 ? '' : pattern.slice(i + 2, end);
        const cls = POSIX_CLASSES[name];
        if (cls === undefined) throw new Error(`Invalid regex '${pattern}': unknown character class [:${name}:]`);
        out += cls;
        i = end + 1;
        continue;
      }
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      continue;
    }
    out += c;
  }
  try {
    return new RegExp(out, 'd');
  } catch (e) {
    throw new Error(`Invalid regex '${pattern}': ${(e as Error).message}`);
  }
}

// TagExtractorImplBase::extractRegexPrefix: a regex starting with `^word\.` or `^word(?=\.)`
// (or exactly `^word$`) runs only on names whose first token is `word`.
export function regexPrefixToken(regex: string): string {
  if (!regex.startsWith('^')) return '';
  for (let i = 1; i < regex.length; i++) {
    if (/[A-Za-z0-9_]/.test(regex[i])) continue;
    if (i > 1) {
      const last = i === regex.length - 1;
      const rest = regex.slice(i);
      if ((!last && (rest.startsWith('\\.') || rest.startsWith('(?=\\.)'))) || (last && regex[i] === '$')) return regex.slice(1, i);
    }
    return '';
  }
  return '';
}

interface Extractor {
  name: string;
  prefix: string;
  /** Adds the tag and the range to remove; false when it does not match. */
  extract(fullName: string, tags: Tag[], remove: Array<[number, number]>): boolean;
  otherWithSameName: boolean;
}

function regexExtractor(name: string, regex: string): Extractor {
  const re = ecmaScriptRegExp(regex);
  return {
    name,
    prefix: regexPrefixToken(regex),
    otherWithSameName: false,
    extract(fullName, tags, remove) {
      re.lastIndex = 0;
      const m = re.exec(fullName);
      // std::regex_search succeeds, and match.size() > 1: the regex has a capture group.
      if (!m || m.length < 2) return false;
      const removeRange = m.indices![1];
      const value = m.length > 2 ? m[2] : m[1];
      tags.push({ name, value: value ?? '' });
      if (removeRange) remove.push([removeRange[0], removeRange[1]]);
      return true;
    },
  };
}

function fixedExtractor(name: string, value: string): Extractor {
  return {
    name,
    prefix: regexPrefixToken(value),
    otherWithSameName: false,
    extract(_fullName, tags) {
      tags.push({ name, value });
      return true;
    },
  };
}

// Envoy's envoy.cluster_name: `cluster.<name>.` is removed, <name> is the value.
function clusterNameExtractor(): Extractor {
  return {
    name: 'envoy.cluster_name',
    prefix: 'cluster',
    otherWithSameName: false,
    extract(fullName, tags, remove) {
      if (!fullName.startsWith('cluster.')) return false;
      const dot = fullName.indexOf('.', 8);
      if (dot < 0) return false;
      tags.push({ name: 'envoy.cluster_name', value: fullName.slice(8, dot) });
      remove.push([8, dot + 1]);
      return true;
    },
  };
}

const BUILT_IN: Record<string, () => Extractor> = { 'envoy.cluster_name': clusterNameExtractor };

export interface TagProducerOptions {
  /** Envoy's stats_config.use_all_default_tags (default true): see the file comment for what is built in. */
  useDefaultTags?: boolean;
}

export class TagProducer {
  private readonly withoutPrefix: Extractor[] = [];
  private readonly byPrefix = new Map<string, Extractor[]>();
  private readonly byName = new Map<string, Extractor>();
  private readonly cache = new Map<string, ExtractedName>();

  constructor(specifiers: readonly TagSpecifier[] = [], opts: TagProducerOptions = {}) {
    if (opts.useDefaultTags ?? true) for (const make of Object.values(BUILT_IN)) this.add(make());
    for (const s of specifiers) {
      if (!s.tag_name) throw new Error('tag_name cannot be empty');
      if (s.fixed_value !== undefined) this.add(fixedExtractor(s.tag_name, s.fixed_value));
      else if (s.regex) this.add(regexExtractor(s.tag_name, s.regex));
      else {
        const make = BUILT_IN[s.tag_name];
        if (!make) throw new Error(`No regex specified for tag specifier and no default regex for name: '${s.tag_name}' (this host knows only ${Object.keys(BUILT_IN).join(', ')})`);
        this.add(make());
      }
    }
  }

  private add(e: Extractor): void {
    const other = this.byName.get(e.name);
    if (other) {
      other.otherWithSameName = true;
      e.otherWithSameName = true;
    } else this.byName.set(e.name, e);
    if (e.prefix) {
      const list = this.byPrefix.get(e.prefix) ?? [];
      list.push(e);
      this.byPrefix.set(e.prefix, list);
    } else this.withoutPrefix.push(e);
  }

  /** The tag-extracted name and the tags (in Envoy's order) of a stat's full name. */
  produce(fullName: string): ExtractedName {
    const hit = this.cache.get(fullName);
    if (hit) return { name: hit.name, tags: hit.tags.map((t) => ({ ...t })) };
    const tags: Tag[] = [];
    const remove: Array<[number, number]> = [];
    const done = new Set<string>();
    const run = (e: Extractor) => {
      if (e.otherWithSameName && done.has(e.name)) return;
      if (e.extract(fullName, tags, remove) && e.otherWithSameName) done.add(e.name);
    };
    for (const e of this.withoutPrefix) run(e);
    const dot = fullName.indexOf('.');
    if (dot >= 0) for (const e of this.byPrefix.get(fullName.slice(0, dot)) ?? []) run(e);
    let name = fullName;
    if (remove.length > 0) {
      const cut = new Uint8Array(fullName.length);
      for (const [a, b] of remove) cut.fill(1, a, b);
      name = '';
      for (let i = 0; i < fullName.length; i++) if (!cut[i]) name += fullName[i];
    }
    const result = { name, tags };
    this.cache.set(fullName, result);
    return { name, tags: tags.map((t) => ({ ...t })) };
  }
}

/** The tag configuration in an Envoy bootstrap (parsed YAML/JSON): stats_config.stats_tags and use_all_default_tags. */
export function tagConfigFromBootstrap(bootstrap: unknown): { specifiers: TagSpecifier[]; useDefaultTags: boolean } {
  const sc = (bootstrap as { stats_config?: { stats_tags?: unknown; use_all_default_tags?: unknown } } | null)?.stats_config;
  const raw = sc?.stats_tags ?? [];
  if (!Array.isArray(raw)) throw new Error('stats_config.stats_tags must be a list');
  const specifiers = raw.map((t: Record<string, unknown>, i) => {
    if (typeof t?.tag_name !== 'string') throw new Error(`stats_config.stats_tags[${i}]: tag_name must be a string`);
    const s: TagSpecifier = { tag_name: t.tag_name };
    if (typeof t.regex === 'string') s.regex = t.regex;
    if (typeof t.fixed_value === 'string') s.fixed_value = t.fixed_value;
    return s;
  });
  // use_all_default_tags is a BoolValue: `false` or `{ value: false }`.
  const u = sc?.use_all_default_tags as boolean | { value?: boolean } | undefined;
  const useDefaultTags = u === undefined ? true : typeof u === 'boolean' ? u : u.value !== false;
  return { specifiers, useDefaultTags };
}
