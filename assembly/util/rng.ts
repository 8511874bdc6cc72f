// xorshift64*: a small, fast generator for tie-breaking and weighted choices. Not for secrets.
export class Rng {
  private s: u64;

  constructor(seed: u64) {
    this.s = seed != 0 ? seed : 0x9e3779b97f4a7c15;
  }

  next(): u64 {
    let x = this.s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    this.s = x;
    return x * 0x2545f4914f6cdd1d;
  }

  // Uniform in [0, 1).
  float(): f64 {
    return <f64>(this.next() >> 11) * (1.0 / 9007199254740992.0);
  }

  // Uniform integer in [0, n).
  below(n: i32): i32 {
    return n <= 1 ? 0 : <i32>(this.next() % <u64>n);
  }
}

// A 64-bit finalizer (splitmix64's): an id derived from a seed.
export function mixSeed(x: u64): u64 {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}
