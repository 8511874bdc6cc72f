import { test } from "node:test";
import assert from "node:assert/strict";
import { chatPromptTokens, countTokens, detokenize, FILLER_IDS, fillerToken, IM_END, IM_START, render, REGULAR_VOCAB, tokenize, VOCAB_SIZE } from "./tokens.ts";

test("every token renders as 4 characters and round-trips", () => {
  const ids = [0, 1, 61, 62, 3843, 3844, 99999, REGULAR_VOCAB - 1, IM_START, IM_END, VOCAB_SIZE - 1];
  for (const id of ids) assert.equal(render(id).length, 4);
  const text = detokenize(ids);
  assert.equal(text.length, 4 * ids.length);
  assert.deepEqual(tokenize(text), ids);
  for (let id = 0; id < VOCAB_SIZE; id += 997) assert.deepEqual(tokenize(render(id)), [id]);
  assert.throws(() => render(62 ** 3));
});

test("arbitrary text tokenizes in 4-byte chunks into the ordinary vocabulary", () => {
  const text = "Hello, wörld! 你好 — any text at all\n";
  const ids = tokenize(text);
  assert.equal(ids.length, Math.ceil(Buffer.byteLength(text) / 4));
  assert.equal(countTokens(text), ids.length);
  for (const id of ids) assert.ok(id >= 0 && id < REGULAR_VOCAB);
  assert.deepEqual(tokenize(text), ids, "deterministic");
  // A short tail differs from the same bytes padded.
  assert.notDeepEqual(tokenize("ab"), tokenize("ab\0\0"));
  // Rendered tokens keep their ids inside arbitrary text that is 4-byte aligned before them.
  const mixed = "abc!" + render(1234) + render(42);
  assert.deepEqual(tokenize(mixed).slice(1), [1234, 42]);
  // The 64-byte blocks a router hashes are exactly 16 tokens.
  const prompt = detokenize(Array.from({ length: 48 }, (_, i) => i * 1000));
  for (let b = 0; b < 3; b++) assert.deepEqual(tokenize(prompt.slice(b * 64, b * 64 + 64)), tokenize(prompt).slice(b * 16, b * 16 + 16));
});

test("generated text is filler words that round-trip", () => {
  assert.ok(FILLER_IDS.length >= 100);
  const ids = Array.from({ length: 50 }, (_, i) => fillerToken(12345, i));
  const text = detokenize(ids);
  assert.match(text, /^([a-z]{3} )+$/);
  assert.deepEqual(tokenize(text), ids);
  assert.notDeepEqual(ids, Array.from({ length: 50 }, (_, i) => fillerToken(54321, i)));
});

test("chat prompts follow the ChatML shape and keep message contents aligned", () => {
  const content = detokenize([7, 8, 9]);
  const withDefault = chatPromptTokens([{ role: "user", content }]);
  const explicit = chatPromptTokens([
    { role: "system", content: "Be brief." },
    { role: "user", content },
  ]);
  assert.equal(withDefault[0], IM_START);
  assert.equal(withDefault.filter((t) => t === IM_START).length, 3); // default system, user, assistant header
  assert.equal(explicit.filter((t) => t === IM_START).length, 3);
  const contentAt = withDefault.indexOf(7);
  assert.deepEqual(withDefault.slice(contentAt, contentAt + 4), [7, 8, 9, IM_END]);
  assert.equal(withDefault[contentAt - 3], IM_START, "<|im_start|> 'user\\n' (2 tokens) before the content");
  // A conversation extended by the answer and a new question shares the earlier prompt as a prefix (up to the generation header).
  const turn1 = chatPromptTokens([{ role: "user", content: "a question" }], false);
  const turn2 = chatPromptTokens([
    { role: "user", content: "a question" },
    { role: "assistant", content: "the and" },
    { role: "user", content: "more" },
  ]);
  assert.deepEqual(turn2.slice(0, turn1.length), turn1);
});
