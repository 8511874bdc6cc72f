// Text <-> token ids for the simulator.
//
// Real tokenizers are not needed to show routing effects, but two things are: a prompt sent as
// text over HTTP must come back as the same token ids on the model server (so prefix caching
// sees what the client meant), and the router's prefix hashing, which cuts prompt text into
// 64-byte blocks (16 tokens of ~4 bytes), must line up with the server's 16-token KV blocks.
// So every token is exactly 4 bytes of text:
//
//   render(id)   three base-62 digits (a-z, A-Z, 0-9, most significant first) and a space.
//                Every id below 62^3 has exactly one such form; all model ids (< VOCAB_SIZE) do.
//   tokenize(s)  the UTF-8 bytes of s in 4-byte chunks. A chunk that is a rendered id below
//                VOCAB_SIZE decodes to that id; any other chunk (and a short tail chunk) is hashed
//                to an ordinary token id in [0, REGULAR_VOCAB). Any text works, and
//                tokenize(detokenize(ids)) == ids for every id list.
//
// Lower-case three-letter words followed by a space ("the ", "and ") are rendered ids too, which
// is how generated text is made of filler words and still round-trips.
//
// Sizes follow Qwen2.5: 151 643 ordinary tokens, then the special tokens <|endoftext|>,
// <|im_start|>, <|im_end|>, ...; the embedding has 152 064 rows.

export const VOCAB_SIZE = 152_064;
export const REGULAR_VOCAB = 151_643;
export const ENDOFTEXT = 151_643;
export const IM_START = 151_644;
export const IM_END = 151_645;
export const BYTES_PER_TOKEN = 4;

const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const BASE = ALPHABET.length; // 62
const DIGIT = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE; i++) DIGIT[ALPHABET.charCodeAt(i)] = i;
const SPACE = 0x20;

const renderCache: string[] = [];

/** The 4-character text of a token id (0 <= id < 62^3). */
export function render(id: number): string {
  let s = renderCache[id];
  if (s === undefined) {
    if (!Number.isInteger(id) || id < 0 || id >= BASE * BASE * BASE) throw new RangeError(`token id out of range: ${id}`);
    s = ALPHABET[Math.floor(id / (BASE * BASE))] + ALPHABET[Math.floor(id / BASE) % BASE] + ALPHABET[id % BASE] + " ";
    renderCache[id] = s;
  }
  return s;
}

/** The text of a list of token ids: 4 characters per id. */
export function detokenize(ids: ArrayLike<number>): string {
  const parts = new Array<string>(ids.length);
  for (let i = 0; i < ids.length; i++) parts[i] = render(ids[i]);
  return parts.join("");
}

function hashChunk(bytes: Uint8Array, start: number, len: number): number {
  let h = 0x811c9dc5 ^ len;
  for (let i = 0; i < len; i++) {
    h ^= bytes[start + i];
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return (h >>> 0) % REGULAR_VOCAB;
}

/** Token ids of a UTF-8 byte string. */
export function tokenizeBytes(bytes: Uint8Array): number[] {
  const out: number[] = [];
  const n = bytes.length;
  let i = 0;
  for (; i + BYTES_PER_TOKEN <= n; i += BYTES_PER_TOKEN) {
    const b0 = bytes[i], b1 = bytes[i + 1], b2 = bytes[i + 2];
    if (bytes[i + 3] === SPACE && b0 < 128 && b1 < 128 && b2 < 128) {
      const d0 = DIGIT[b0], d1 = DIGIT[b1], d2 = DIGIT[b2];
      if (d0 >= 0 && d1 >= 0 && d2 >= 0) {
        const v = (d0 * BASE + d1) * BASE + d2;
        if (v < VOCAB_SIZE) {
          out.push(v);
          continue;
        }
      }
    }
    out.push(hashChunk(bytes, i, BYTES_PER_TOKEN));
  }
  if (i < n) out.push(hashChunk(bytes, i, n - i));
  return out;
}

/** Token ids of a text (its UTF-8 bytes in 4-byte chunks). */
export function tokenize(text: string): number[] {
  return tokenizeBytes(Buffer.from(text, "utf8"));
}

/** Number of tokens tokenize(text) returns, without building them. */
export function countTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, "utf8") / BYTES_PER_TOKEN);
}

// Filler words for generated text: each is a rendered token id.
const FILLER_WORDS = (
  "the and for you not are but all any can had her was one our out day get has him his how man new now old see two way who " +
  "boy did its let put say she too use act add age ago air arm art ask bad bag bed big box car cat cut dog dry eat end eye " +
  "far few fit fly fun gas hat hot ice job key kid lay leg lie lot low map may mix net oil own pay per raw red row run sea " +
  "set sit six sky son sun tax tea ten top toy try war wet win yes yet"
).split(" ");
export const FILLER_IDS: readonly number[] = FILLER_WORDS.map((w) => tokenize(w + " ")[0]);

/**
 * The i-th generated token of a request: filler words, a deterministic sequence per seed.
 * (The simulated model ignores EOS like benchmark_serving's --ignore-eos.)
 */
export function fillerToken(seed: number, i: number): number {
  let h = Math.imul(seed ^ Math.imul(i + 1, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 15;
  return FILLER_IDS[(h >>> 0) % FILLER_IDS.length];
}

export interface ChatMessage {
  role: string;
  content: string;
}

/** Qwen2.5's default system prompt, added by its chat template when there is no system message. */
export const QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/**
 * Prompt token ids of a chat, shaped like Qwen2.5's ChatML template:
 *   <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
 * Role headers, contents and separators are tokenized separately, so a message's content keeps
 * its own 4-byte alignment (rendered tokens in a message come back as the same ids).
 */
export function chatPromptTokens(messages: readonly ChatMessage[], addGenerationPrompt = true): number[] {
  const out: number[] = [];
  const newline = tokenize("\n");
  const all = messages.length > 0 && messages[0].role === "system" ? messages : [{ role: "system", content: QWEN_DEFAULT_SYSTEM }, ...messages];
  const append = (ids: number[]) => {
    for (const id of ids) out.push(id);
  };
  for (const m of all) {
    out.push(IM_START);
    append(tokenize(m.role + "\n"));
    append(tokenize(m.content));
    out.push(IM_END);
    append(newline);
  }
  if (addGenerationPrompt) {
    out.push(IM_START);
    append(tokenize("assistant\n"));
  }
  return out;
}
