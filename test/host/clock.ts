// Time sources and timers for the host. Envoy reads wall time for
// proxy_get_current_time_nanoseconds / WASI realtime and monotonic time for
// WASI's monotonic clock, and runs tick timers on each worker's dispatcher.
//
// ManualClock: time only moves in advance(); timers due inside the advanced
// window fire in due-time order (ties in creation order), with the clock set
// to each timer's due time while it runs. Deterministic, for tests.
// RealClock: Date/hrtime and setTimeout, for long-running use and benchmarks.

export interface Timer {
  cancel(): void;
}

export interface Clock {
  readonly mode: 'manual' | 'real';
  /** Wall-clock milliseconds (fractional in manual mode). */
  nowMs(): number;
  realtimeNs(): bigint;
  monotonicNs(): bigint;
  setTimer(delayMs: number, fn: () => void): Timer;
  close(): void;
}

interface ManualTimer extends Timer {
  due: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

export class ManualClock implements Clock {
  readonly mode = 'manual' as const;
  private elapsedMs = 0;
  private readonly baseNs: bigint;
  private timers: ManualTimer[] = [];
  private seq = 0;

  constructor(startTimeMs = 1_700_000_000_000) {
    this.baseNs = BigInt(Math.round(startTimeMs)) * 1_000_000n;
  }

  nowMs(): number {
    return Number(this.baseNs / 1_000_000n) + this.elapsedMs;
  }

  realtimeNs(): bigint {
    return this.baseNs + BigInt(Math.round(this.elapsedMs * 1e6));
  }

  monotonicNs(): bigint {
    // Arbitrary origin, like a real monotonic clock; starts at one hour.
    return 3_600_000_000_000n + BigInt(Math.round(this.elapsedMs * 1e6));
  }

  setTimer(delayMs: number, fn: () => void): Timer {
    const t: ManualTimer = {
      due: this.elapsedMs + Math.max(0, delayMs),
      seq: this.seq++,
      fn,
      cancelled: false,
      cancel: () => {
        t.cancelled = true;
      },
    };
    this.timers.push(t);
    return t;
  }

  /** Number of armed timers (for assertions). */
  get pendingTimers(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /**
   * Move time forward by `ms`, firing due timers in order. `afterEach` runs
   * after every fired timer (the host drains posted work there).
   */
  advance(ms: number, afterEach?: () => void): number {
    const target = this.elapsedMs + ms;
    let fired = 0;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      let next: ManualTimer | undefined;
      for (const t of this.timers) {
        if (t.due <= target && (!next || t.due < next.due || (t.due === next.due && t.seq < next.seq))) next = t;
      }
      if (!next) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.elapsedMs = Math.max(this.elapsedMs, next.due);
      fired++;
      next.fn();
      afterEach?.();
    }
    this.elapsedMs = target;
    return fired;
  }

  close(): void {
    for (const t of this.timers) t.cancelled = true;
    this.timers = [];
  }
}

export class RealClock implements Clock {
  readonly mode = 'real' as const;
  private readonly realBaseNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  private handles = new Set<ReturnType<typeof setTimeout>>();

  nowMs(): number {
    return Date.now();
  }

  realtimeNs(): bigint {
    return this.realBaseNs + process.hrtime.bigint();
  }

  monotonicNs(): bigint {
    return process.hrtime.bigint();
  }

  setTimer(delayMs: number, fn: () => void): Timer {
    const h = setTimeout(() => {
      this.handles.delete(h);
      fn();
    }, Math.max(0, delayMs));
    this.handles.add(h);
    return {
      cancel: () => {
        clearTimeout(h);
        this.handles.delete(h);
      },
    };
  }

  close(): void {
    for (const h of this.handles) clearTimeout(h);
    this.handles.clear();
  }
}
