// Affinity placement across gateway replicas that do not talk: each replica has its own shared
// data (its own prefix index), and a conversation's turns still land on one pod.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gateway, endpoints, DEST } from './harness.ts';

// Each conversation has its own system prompt: nothing of it is in either replica's index.
function turn(k: number, turns: number): string {
  const messages: Array<{ role: string; content: string }> = [{ role: 'system', content: `Session ${k}. You are a careful assistant for a travel company. Answer briefly and politely.` }];
  for (let t = 0; t < turns; t++) {
    messages.push({ role: 'user', content: `Conversation ${k}, question ${t}: which trains go from Zurich to Milan on weekdays, and how long do they take?` });
    if (t < turns - 1) messages.push({ role: 'assistant', content: `Several, about three hours and twenty minutes (${k}.${t}).` });
  }
  return JSON.stringify({ model: '/model/qwen', messages });
}

// Two replicas with the same state; turn 1 goes through replica A, turn 2 through replica B.
function run(mode: string): { same: number; total: number } {
  const a = new Gateway({ workers: 1, seed: 1, config: { affinity: { mode } } });
  const b = new Gateway({ workers: 1, seed: 2, config: { affinity: { mode } } });
  a.pushState(endpoints(4), { strategy: 'PREFIX_CACHE' } as never);
  b.pushState(endpoints(4), { strategy: 'PREFIX_CACHE' } as never);
  let same = 0;
  const total = 40;
  for (let k = 0; k < total; k++) {
    const r1 = a.chat(turn(k, 1), { response: { status: 200, body: '{}' } });
    const r2 = b.chat(turn(k, 2), { response: { status: 200, body: '{}' } });
    assert.equal(r1.kind, 'upstream');
    assert.equal(r2.kind, 'upstream');
    if (r1.header(DEST) === r2.header(DEST)) same++;
  }
  return { same, total };
}

test('affinity.mode place: a conversation\'s turns land on one pod whichever replica routes them; off: they scatter', () => {
  const place = run('place');
  assert.equal(place.same, place.total, `place: ${place.same} of ${place.total} second turns on the first turn's pod`);
  const off = run('off');
  assert.ok(off.same < off.total * 0.6, `off: ${off.same} of ${off.total} (about a quarter by chance with 4 pods)`);
});

test('affinity keys: different conversations have different homes', () => {
  const a = new Gateway({ workers: 1, config: { affinity: { mode: 'place' } } });
  a.pushState(endpoints(4), { strategy: 'PREFIX_CACHE' } as never);
  const pods = new Set<string>();
  for (let k = 0; k < 40; k++) pods.add(a.chat(turn(k, 1), { response: { status: 200, body: '{}' } }).header(DEST)!);
  // Different conversations are spread over the pods, not all sent to one home.
  assert.equal(pods.size, 4);
});
