// Runs the benchmark's simulations, one job per (workload, strategy, seed), in `jobs` worker
// processes at once (each simulation is single-threaded and independent of the others, so the
// results are the same however many run together). With one job at a time everything runs in
// this process.

import { fork, type ChildProcess } from 'node:child_process';
import { simulate, type ClusterResult } from '../../test/sim/cluster.ts';
import type { Setup } from './setup.ts';

export interface Job {
  workload: number;
  strategy: string;
  seed: number;
}

export function runJob(s: Setup, job: Job): Promise<ClusterResult> {
  const w = s.workloads[job.workload];
  return simulate({
    cluster: { pods: w.pods, engine: w.engine, seed: job.seed, scrapeIntervalMs: s.scrape.minMs, scrapeJitterMs: s.scrape.maxMs - s.scrape.minMs, ...(w.pd ? { pd: w.pd } : {}) },
    source: w.source(job.seed),
    router: s.router(job.strategy, job.seed),
    arrival: w.arrival,
  });
}

/** Runs every job; onResult gets each result as it comes (in any order), with the job's index. */
export async function runJobs(s: Setup, args: string[], jobs: Job[], onResult: (i: number, r: ClusterResult) => void): Promise<void> {
  const n = Math.min(s.jobs, jobs.length);
  if (n <= 1) {
    for (let i = 0; i < jobs.length; i++) onResult(i, await runJob(s, jobs[i]));
    return;
  }
  let next = 0;
  await new Promise<void>((resolve, reject) => {
    const workers: ChildProcess[] = [];
    let live = 0;
    const stop = (e: Error) => {
      for (const w of workers) w.kill();
      reject(e);
    };
    const feed = (w: ChildProcess) => {
      if (next < jobs.length) {
        const i = next++;
        w.once('message', (m: { result?: ClusterResult; error?: string }) => {
          if (m.error !== undefined) return stop(new Error(`${jobs[i].strategy} on ${s.workloads[jobs[i].workload].name}, seed ${jobs[i].seed}: ${m.error}`));
          onResult(i, m.result!);
          feed(w);
        });
        w.send({ i, job: jobs[i] });
      } else {
        w.disconnect();
        if (--live === 0) resolve();
      }
    };
    for (let k = 0; k < n; k++) {
      // Structured clone ("advanced") carries the results as they are; a worker's stdout goes to
      // stderr, so that stdout stays the report's (or --json's) alone.
      const w = fork(new URL('./worker.ts', import.meta.url), args, { execArgv: ['--import', 'tsx'], serialization: 'advanced', stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
      w.stdout!.pipe(process.stderr);
      w.on('exit', (code) => {
        if (code !== 0 && code !== null) stop(new Error(`a benchmark worker exited with status ${code}`));
      });
      workers.push(w);
      live++;
      feed(w);
    }
  });
}
