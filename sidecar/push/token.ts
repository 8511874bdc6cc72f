// The push bearer token: from --push-token-file (re-read after a 401, so a rotated Secret is
// picked up) or from the WASM_EPP_PUSH_TOKEN environment variable.

import { readFileSync } from "node:fs";
import { SidecarError } from "../errors.ts";
import { TOKEN_ENV } from "../cli.ts";

export class TokenSource {
  private value: string;

  constructor(
    private readonly file: string | undefined,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    if (file !== undefined) {
      this.value = readToken(file);
    } else {
      const v = (env[TOKEN_ENV] ?? "").trim();
      if (v.length === 0) throw new SidecarError("token_missing", `no push token: give --push-token-file or set ${TOKEN_ENV}`);
      this.value = v;
    }
  }

  get token(): string {
    return this.value;
  }

  // Re-reads the file; true when the token changed. Keeps the old token when the file is
  // unreadable.
  reload(): boolean {
    if (this.file === undefined) return false;
    try {
      const next = readToken(this.file);
      const changed = next !== this.value;
      this.value = next;
      return changed;
    } catch {
      return false;
    }
  }
}

function readToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new SidecarError("token_file_unreadable", `--push-token-file ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
  const token = text.trim();
  if (token.length === 0) throw new SidecarError("token_file_unreadable", `--push-token-file ${file} is empty`);
  if (/[\r\n]/.test(token)) throw new SidecarError("token_file_unreadable", `--push-token-file ${file} holds more than one line`);
  return token;
}
