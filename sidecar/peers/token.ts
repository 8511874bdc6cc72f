// The peer bearer token, shared by every replica (a Secret): read from --peer-token-file, sent on
// every request to a peer, and checked on every request from one. The check compares SHA-256
// digests with a constant-time comparison, so neither the token's bytes nor its length leak
// through timing. A request with a wrong token makes the file be re-read (at most every 10 s), so
// a rotated Secret is picked up; so does a peer answering 401.

import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { SidecarError } from "../errors.ts";

const RELOAD_EVERY_MS = 10_000;

export class PeerToken {
  private value: string;
  private digest: Buffer;
  private lastReload: number;

  constructor(
    private readonly file: string,
    private readonly now: () => number = Date.now,
  ) {
    this.value = readPeerToken(file);
    this.digest = sha256(this.value);
    this.lastReload = now();
  }

  get token(): string {
    return this.value;
  }

  // True when `authorization` is "Bearer <the token>".
  check(authorization: string | undefined): boolean {
    if (this.matches(authorization)) return true;
    if (this.now() - this.lastReload >= RELOAD_EVERY_MS && this.reload()) return this.matches(authorization);
    return false;
  }

  // Re-reads the file; true when the token changed. Keeps the old token when the file is
  // unreadable.
  reload(): boolean {
    this.lastReload = this.now();
    try {
      const next = readPeerToken(this.file);
      if (next === this.value) return false;
      this.value = next;
      this.digest = sha256(next);
      return true;
    } catch {
      return false;
    }
  }

  private matches(authorization: string | undefined): boolean {
    const m = /^Bearer (.+)$/.exec(authorization ?? "");
    return timingSafeEqual(sha256(m ? m[1] : ""), this.digest) && m !== null;
  }
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

export function readPeerToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new SidecarError("token_file_unreadable", `--peer-token-file ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
  const token = text.trim();
  if (token.length === 0) throw new SidecarError("token_file_unreadable", `--peer-token-file ${file} is empty`);
  if (/[\r\n]/.test(token)) throw new SidecarError("token_file_unreadable", `--peer-token-file ${file} holds more than one line`);
  return token;
}
