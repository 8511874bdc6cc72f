// How long one engine step takes on a GPU, and how many KV blocks fit in its memory.
//
// A step runs the model once over every token scheduled in it (decode tokens, prefill chunks).
// Its time is a roofline sum of the two kinds of kernels, plus host overheads:
//
//   linear   = max(matmul FLOPs / (peak FLOPs x flopsEfficiency),
//                  weight bytes read / (bandwidth x bandwidthEfficiency))
//   attention = max(attention FLOPs / (peak FLOPs x attentionFlopsEfficiency),
//                   KV bytes read and written / (bandwidth x bandwidthEfficiency))
//   step = linear + attention + stepOverhead + perSeqOverhead x sequences
//          + launch overhead (eager: per layer; CUDA graphs: per step) + LoRA costs
//
// Every number is a field, so other GPUs and models can be described; the defaults describe the
// seeds' deployment: Qwen2.5-7B-Instruct in bf16 on one NVIDIA A10, `vllm serve
// --gpu-memory-utilization 0.95 --enforce-eager --enable-lora --max-loras 2`. Where each number
// comes from is in docs/simulator.md.

export interface ModelSpec {
  name: string;
  layers: number;
  hidden: number;
  heads: number; // query heads
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number; // embedding rows
  tiedEmbeddings: boolean;
  qkvBias: boolean;
  bytesPerParam: number; // 2 for bf16
  kvBytesPerElement: number; // 2 for a bf16 KV cache
  loraRank: number; // rank of the adapters (vLLM --max-lora-rank sizes the slot buffers)
}

export interface GpuSpec {
  name: string;
  memoryBytes: number; // total memory visible to CUDA
  peakFlops: number; // dense bf16 tensor FLOP/s
  memoryBandwidth: number; // bytes/s
  hostLinkBandwidth: number; // bytes/s, host to device (PCIe)
}

export interface CostModel {
  model: ModelSpec;
  gpu: GpuSpec;
  gpuMemoryUtilization: number; // vLLM --gpu-memory-utilization
  activationPeakBytes: number; // peak activation memory of vLLM's profiling run
  nonTorchBytes: number; // memory outside PyTorch's allocator (cuBLAS workspaces, ...)
  flopsEfficiency: number; // achieved / peak FLOP/s on the large matmuls of a prefill
  attentionFlopsEfficiency: number; // achieved / peak FLOP/s in the attention kernels
  bandwidthEfficiency: number; // achieved / peak memory bandwidth when streaming weights and KV
  stepOverheadMs: number; // host work per step: schedule, prepare inputs, sample, process outputs
  perSeqOverheadMs: number; // host work per scheduled sequence
  enforceEager: boolean; // vLLM --enforce-eager: no CUDA graphs
  eagerLaunchUsPerLayer: number; // exposed kernel-launch gaps per layer per step in eager mode
  graphLaunchMs: number; // per-step launch cost with CUDA graphs
  loraOverheadUsPerLayer: number; // extra LoRA (punica) kernels per layer when adapters are in the batch
  loraDiskLoadMs: number; // loading an adapter that is not in the CPU cache (--max-cpu-loras)
}

/** Qwen2.5-7B(-Instruct) from its config.json. */
export const QWEN25_7B: ModelSpec = {
  name: "Qwen2.5-7B-Instruct",
  layers: 28,
  hidden: 3584,
  heads: 28,
  kvHeads: 4,
  headDim: 128,
  intermediate: 18944,
  vocab: 152064,
  tiedEmbeddings: false,
  qkvBias: true,
  bytesPerParam: 2,
  kvBytesPerElement: 2,
  loraRank: 16,
};

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** NVIDIA A10 (datasheet: 24 GB GDDR6, 600 GB/s, 125 TFLOPS dense BF16 tensor, PCIe 4.0 x16). */
export const A10: GpuSpec = {
  name: "NVIDIA A10",
  memoryBytes: 23028 * MiB,
  peakFlops: 125e12,
  memoryBandwidth: 600e9,
  hostLinkBandwidth: 25e9,
};

/** The seeds' deployment: Qwen2.5-7B bf16 on one A10, --gpu-memory-utilization 0.95 --enforce-eager. */
export function a10Qwen7B(over: Partial<CostModel> = {}): CostModel {
  return {
    model: QWEN25_7B,
    gpu: A10,
    gpuMemoryUtilization: 0.95,
    activationPeakBytes: 1.4 * GiB,
    nonTorchBytes: 0.2 * GiB,
    flopsEfficiency: 0.55,
    attentionFlopsEfficiency: 0.4,
    bandwidthEfficiency: 0.85,
    stepOverheadMs: 2.5,
    perSeqOverheadMs: 0.03,
    enforceEager: true,
    eagerLaunchUsPerLayer: 70,
    graphLaunchMs: 0.3,
    loraOverheadUsPerLayer: 40,
    loraDiskLoadMs: 150,
    ...over,
  };
}

// ---- quantities derived from the model ----

/** Parameters of one decoder layer (attention, MLP, two norms). */
export function layerParams(m: ModelSpec): number {
  const kvDim = m.kvHeads * m.headDim;
  const qDim = m.heads * m.headDim;
  const bias = m.qkvBias ? qDim + 2 * kvDim : 0;
  return m.hidden * qDim + 2 * m.hidden * kvDim + bias + qDim * m.hidden + 3 * m.hidden * m.intermediate + 2 * m.hidden;
}

/** Parameters that take part in a token's matmuls in one layer. */
function layerMatmulParams(m: ModelSpec): number {
  const kvDim = m.kvHeads * m.headDim;
  const qDim = m.heads * m.headDim;
  return m.hidden * qDim + 2 * m.hidden * kvDim + qDim * m.hidden + 3 * m.hidden * m.intermediate;
}

export function totalParams(m: ModelSpec): number {
  const emb = m.vocab * m.hidden;
  return m.layers * layerParams(m) + emb * (m.tiedEmbeddings ? 1 : 2) + m.hidden;
}

/** Bytes of weights held in GPU memory. */
export function weightBytes(m: ModelSpec): number {
  return totalParams(m) * m.bytesPerParam;
}

/** Bytes of weights streamed from memory by every step: all layers and the LM head (an embedding lookup reads only its rows). */
export function weightBytesReadPerStep(m: ModelSpec): number {
  return (m.layers * layerParams(m) + m.vocab * m.hidden + m.hidden) * m.bytesPerParam;
}

/** KV-cache bytes per token: K and V, every layer, every KV head. */
export function kvBytesPerToken(m: ModelSpec): number {
  return 2 * m.layers * m.kvHeads * m.headDim * m.kvBytesPerElement;
}

/** Matmul FLOPs per token through the decoder layers (2 per multiply-add). */
export function linearFlopsPerToken(m: ModelSpec): number {
  return 2 * m.layers * layerMatmulParams(m);
}

/** LM-head FLOPs per sampled sequence (logits are computed only for the last position). */
export function lmHeadFlops(m: ModelSpec): number {
  return 2 * m.vocab * m.hidden;
}

/** Attention FLOPs per (query token, key token) pair over all layers: QK^T and PV. */
export function attentionFlopsPerPair(m: ModelSpec): number {
  return 4 * m.layers * m.heads * m.headDim;
}

/** Bytes of one LoRA slot's buffers (A and B for qkv, o, gate_up, down in every layer). */
export function loraSlotBytes(m: ModelSpec): number {
  const r = m.loraRank;
  const kvDim = m.kvHeads * m.headDim;
  const qDim = m.heads * m.headDim;
  const perLayer = r * (m.hidden + qDim + 2 * kvDim) + r * (qDim + m.hidden) + r * (m.hidden + 2 * m.intermediate) + r * (m.intermediate + m.hidden);
  return perLayer * m.layers * m.bytesPerParam;
}

/** KV-cache blocks vLLM would allocate: what is left of memory x utilization after weights, LoRA slots, activations. */
export function kvCacheBlocks(c: CostModel, blockSize: number, maxLoras = 0): number {
  const budget = c.gpu.memoryBytes * c.gpuMemoryUtilization;
  const free = budget - weightBytes(c.model) - maxLoras * loraSlotBytes(c.model) - c.activationPeakBytes - c.nonTorchBytes;
  return Math.max(0, Math.floor(free / (blockSize * kvBytesPerToken(c.model))));
}

/** What one step computes, summed over its scheduled sequences (filled in by the engine). */
export interface BatchShape {
  seqs: number; // sequences scheduled
  tokens: number; // tokens computed (decode tokens count 1 each)
  sampled: number; // sequences that sample a token this step (LM head)
  contextRead: number; // sum over sequences of context length after the step (KV read once per sequence)
  attentionPairs: number; // sum over new tokens of the keys each attends to
  loraAdapters: number; // distinct adapters in the batch
  loraSwapIns: number; // adapters loaded into a GPU slot for this step
  loraDiskLoads: number; // of those, adapters not in the CPU cache
}

export function emptyBatch(): BatchShape {
  return { seqs: 0, tokens: 0, sampled: 0, contextRead: 0, attentionPairs: 0, loraAdapters: 0, loraSwapIns: 0, loraDiskLoads: 0 };
}

/** Cached per-model constants for stepTimeMs. */
export class StepTimer {
  readonly weightReadBytes: number;
  readonly kvPerToken: number;
  readonly linearPerToken: number;
  readonly lmHead: number;
  readonly attnPerPair: number;
  readonly loraSlot: number;
  private readonly flops: number;
  private readonly attnFlops: number;
  private readonly bw: number;

  constructor(readonly cost: CostModel) {
    const m = cost.model;
    this.weightReadBytes = weightBytesReadPerStep(m);
    this.kvPerToken = kvBytesPerToken(m);
    this.linearPerToken = linearFlopsPerToken(m);
    this.lmHead = lmHeadFlops(m);
    this.attnPerPair = attentionFlopsPerPair(m);
    this.loraSlot = loraSlotBytes(m);
    this.flops = cost.gpu.peakFlops * cost.flopsEfficiency;
    this.attnFlops = cost.gpu.peakFlops * cost.attentionFlopsEfficiency;
    this.bw = cost.gpu.memoryBandwidth * cost.bandwidthEfficiency;
  }

  /** Duration of a step in milliseconds; 0 for an empty batch. */
  stepMs(b: BatchShape): number {
    if (b.seqs === 0) return 0;
    const c = this.cost;
    const loraBytes = b.loraAdapters * this.loraSlot;
    const linearS = Math.max((b.tokens * this.linearPerToken + b.sampled * this.lmHead) / this.flops, (this.weightReadBytes + loraBytes) / this.bw);
    const kvBytes = (b.contextRead + b.tokens) * this.kvPerToken; // read the context, write the new tokens
    const attnS = Math.max((b.attentionPairs * this.attnPerPair) / this.attnFlops, kvBytes / this.bw);
    let ms = (linearS + attnS) * 1000 + c.stepOverheadMs + c.perSeqOverheadMs * b.seqs;
    ms += c.enforceEager ? (c.model.layers * c.eagerLaunchUsPerLayer) / 1000 : c.graphLaunchMs;
    if (b.loraAdapters > 0) ms += (c.model.layers * c.loraOverheadUsPerLayer) / 1000;
    if (b.loraSwapIns > 0) ms += (b.loraSwapIns * this.loraSlot * 1000) / c.gpu.hostLinkBandwidth;
    ms += b.loraDiskLoads * c.loraDiskLoadMs;
    return ms;
  }

  /** The physical floor of any step: streaming the weights once at full peak bandwidth. */
  weightFloorMs(): number {
    return (this.weightReadBytes / this.cost.gpu.memoryBandwidth) * 1000;
  }

  /** Duration of a pure decode step: `batch` sequences, each with `context` tokens of context. */
  decodeStepMs(batch: number, context: number): number {
    return this.stepMs({
      seqs: batch,
      tokens: batch,
      sampled: batch,
      contextRead: batch * (context + 1),
      attentionPairs: batch * (context + 1),
      loraAdapters: 0,
      loraSwapIns: 0,
      loraDiskLoads: 0,
    });
  }

  /** Duration of one prefill step of `tokens` new tokens starting at position `start` of one sequence. */
  prefillStepMs(tokens: number, start = 0, sampled = true): number {
    return this.stepMs({
      seqs: 1,
      tokens,
      sampled: sampled ? 1 : 0,
      contextRead: start + tokens,
      attentionPairs: tokens * start + (tokens * (tokens + 1)) / 2,
      loraAdapters: 0,
      loraSwapIns: 0,
      loraDiskLoads: 0,
    });
  }
}

// ---- KV transfer between a prefill and a decode server (disaggregation) ----

/**
 * The path a prefill server's KV takes to a decode server. Sending n bytes takes
 * n / bandwidth; a transfer is complete `setupMs` after its last byte left (completion
 * notification and the receiver noticing it). Where the figures come from is in
 * docs/simulator.md.
 */
export interface KvLink {
  name: string;
  /** Bytes per second achieved by the transfer engine on this path. */
  bandwidth: number;
  /** Fixed latency per transfer, in milliseconds. */
  setupMs: number;
}

/** Mooncake transfer engine over one 200 Gbps RoCE NIC: 87 % of line rate (87 GB/s measured on 4 x 200 Gbps). */
export const RDMA_200G: KvLink = { name: "RDMA 200 Gbps (Mooncake)", bandwidth: 0.87 * 25e9, setupMs: 1 };

/** TCP over one 25 Gbps Ethernet NIC (no RDMA): line-rate bound, ~90 % goodput. */
export const TCP_25G: KvLink = { name: "TCP 25 Gbps", bandwidth: 0.9 * 3.125e9, setupMs: 2 };

/** Bytes of KV cache for `tokens` tokens of a model (what a transfer moves). */
export function kvTransferBytes(m: ModelSpec, tokens: number): number {
  return tokens * kvBytesPerToken(m);
}

/**
 * When the KV of a prefill computed in `chunks` (each complete at its `atMs`, sent as soon as it
 * is complete, one after another) has fully arrived: every chunk leaves once it is computed and
 * the previous one has left, and the transfer completes `setupMs` after the last byte. With a
 * single chunk this is end + bytes / bandwidth + setup. Concurrent transfers do not slow each
 * other down (the NIC is lightly used: see docs/simulator.md).
 */
export function kvTransferDoneMs(chunks: readonly { atMs: number; tokens: number }[], bytesPerToken: number, link: KvLink): number {
  if (chunks.length === 0) throw new RangeError("a transfer needs at least one chunk");
  let t = -Infinity;
  for (const c of chunks) t = Math.max(t, c.atMs) + ((c.tokens * bytesPerToken) / link.bandwidth) * 1000;
  return t + link.setupMs;
}
