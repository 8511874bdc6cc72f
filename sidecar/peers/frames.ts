// Frames of the peer stream (POST /peers/v1/stream): a stream's body is frames back to back, each
//
//   u32  length (little-endian)
//   length bytes: a share body (sections, sections.ts), possibly empty (a keep-alive)
//
// FrameSplitter cuts the frames out of the chunks as they arrive, whatever the chunk boundaries:
// a frame that lies whole in one chunk is handed out as a view into it (no copy); one that spans
// chunks is gathered into a buffer of its own length. It never holds more than one frame of at
// most `maxBytes` plus a header's 4 bytes: a header announcing more is an error, and nothing after
// an error is taken. Pure; no I/O, no clock.

export const FRAME_HEADER_BYTES = 4;

export type SplitResult =
  // The frames completed by this chunk (views, or buffers of their own), in order.
  | { ok: true; frames: Uint8Array[] }
  // A header announced `length` bytes, more than maxBytes; `frames` completed before it.
  | { ok: false; length: number; frames: Uint8Array[] };

export class FrameSplitter {
  private readonly head = new Uint8Array(FRAME_HEADER_BYTES);
  private headFill = 0;
  private body?: Uint8Array; // the frame being gathered across chunks
  private bodyFill = 0;
  private failed = false;

  constructor(readonly maxBytes: number) {}

  // Bytes of a frame begun but not complete (its header's included).
  get pending(): number {
    return this.headFill + (this.body ? FRAME_HEADER_BYTES + this.bodyFill : 0);
  }

  push(chunk: Uint8Array): SplitResult {
    const frames: Uint8Array[] = [];
    if (this.failed) return { ok: false, length: -1, frames };
    let at = 0;
    while (at < chunk.length) {
      if (this.body) {
        const n = Math.min(this.body.length - this.bodyFill, chunk.length - at);
        this.body.set(chunk.subarray(at, at + n), this.bodyFill);
        this.bodyFill += n;
        at += n;
        if (this.bodyFill === this.body.length) {
          frames.push(this.body);
          this.body = undefined;
          this.bodyFill = 0;
        }
        continue;
      }
      let length: number;
      if (this.headFill === 0 && chunk.length - at >= FRAME_HEADER_BYTES) {
        length = u32(chunk, at);
        at += FRAME_HEADER_BYTES;
      } else {
        const n = Math.min(FRAME_HEADER_BYTES - this.headFill, chunk.length - at);
        this.head.set(chunk.subarray(at, at + n), this.headFill);
        this.headFill += n;
        at += n;
        if (this.headFill < FRAME_HEADER_BYTES) break;
        this.headFill = 0;
        length = u32(this.head, 0);
      }
      if (length > this.maxBytes) {
        this.failed = true;
        return { ok: false, length, frames };
      }
      if (chunk.length - at >= length) {
        frames.push(chunk.subarray(at, at + length));
        at += length;
      } else {
        this.body = new Uint8Array(length);
        this.bodyFill = 0;
      }
    }
    return { ok: true, frames };
  }
}

// A frame around a share body: a new buffer of 4 + body.length bytes.
export function encodeFrame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  writeFrameHeader(out, body.length);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

// Writes a frame's 4 header bytes at the start of `out`.
export function writeFrameHeader(out: Uint8Array, length: number): void {
  out[0] = length & 0xff;
  out[1] = (length >>> 8) & 0xff;
  out[2] = (length >>> 16) & 0xff;
  out[3] = (length >>> 24) & 0xff;
}

function u32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}
