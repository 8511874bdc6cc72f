// Writes scripts/bench/traces/conversations.jsonl, the `trace-conversations` workload: a chat
// service's traffic as a Mooncake-format trace (test/sim/trace.ts), generated deterministically
// from test/sim/traffic.ts's plan so that it has what public production traces have:
//
//   - hash id 0, a 512-token system prompt, opens 97% of the conversations;
//   - prompt lengths with p99 about 10x the median (long user messages, long histories);
//   - conversations (Zipf-distributed turn counts) whose next turn comes minutes and hundreds of
//     requests later, its prompt extending the previous one: it repeats the previous prompt's
//     full 512-token blocks, then new ids (the block that held the end of the previous prompt
//     now holds other tokens too, so it is a new block, as a content hash would make it);
//   - the arrival rate moving +-25% from minute to minute, with short bursts.
//
// The trace records lengths only; a turn's answer is whatever tokens its new blocks hold.
//
//   npx tsx scripts/bench/traces/generate.ts           rewrite the file
//   npx tsx scripts/bench/traces/generate.ts --check   exit 1 if the file differs from the generator

import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { planTraffic, type TrafficOptions } from '../../../test/sim/traffic.ts';

export const CONVERSATIONS_TRACE = fileURLToPath(new URL('./conversations.jsonl', import.meta.url));

const BLOCK = 512;

// Lengths at the scale of a production service with 32k-token contexts; the workload replays it
// with 128 tokens per hash id (a quarter), which fits the simulated pods' 8192. The rate is 90%
// of what 8 simulated pods serve of that replay (scripts/bench/calibrate.ts).
export const CONVERSATIONS: TrafficOptions = {
  requests: 3000,
  ratePerSec: 10,
  warmupMs: 300_000,
  systemLen: BLOCK,
  systemShare: 0.97,
  userLen: { median: 240, sigma: 1.45, max: 24_000 },
  outputLen: { median: 180, sigma: 0.6, min: 8, max: 1024 },
  turnsZipf: 2.2,
  turnGapMs: { median: 90_000, sigma: 0.5, min: 20_000 },
  maxModelLen: 32_768,
  seed: 2024,
};

export function conversationsTrace(o: TrafficOptions = CONVERSATIONS): string {
  const ids = new Map<number, { len: number; hashIds: number[] }>(); // conversation -> its last prompt
  let nextId = 1; // 0 is the system prompt
  const lines: string[] = [];
  for (const p of planTraffic(o)) {
    const prev = ids.get(p.conversation);
    const kept = prev ? prev.hashIds.slice(0, Math.floor(prev.len / BLOCK)) : p.system ? [0] : [];
    const hashIds = kept.slice();
    while (hashIds.length < Math.ceil(p.promptLen / BLOCK)) hashIds.push(nextId++);
    ids.set(p.conversation, { len: p.promptLen, hashIds });
    if (p.atMs < 0) continue; // warm-up: history only
    lines.push(JSON.stringify({ timestamp: Math.round(p.atMs), input_length: p.promptLen, output_length: p.outputLen, hash_ids: hashIds }));
  }
  return lines.join('\n') + '\n';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = conversationsTrace();
  if (process.argv.includes('--check')) {
    if (readFileSync(CONVERSATIONS_TRACE, 'utf8') !== text) {
      process.stderr.write(`${CONVERSATIONS_TRACE} differs from the generator's output; run without --check to rewrite it\n`);
      process.exit(1);
    }
  } else {
    writeFileSync(CONVERSATIONS_TRACE, text);
    process.stderr.write(`${CONVERSATIONS_TRACE}: ${text.split('\n').length - 1} requests, ${(text.length / 1024).toFixed(0)} KiB\n`);
  }
}
