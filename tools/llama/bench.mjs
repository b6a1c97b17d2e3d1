#!/usr/bin/env node
// llama.cpp timed exactly as `vlmbench bench` times itself, written as vlmbench's bench rows.
//
//   node tools/llama/bench.mjs --gguf FILE [--model-dir DIR] [-p 512] [-n 128] [--test pp512+tg128]
//        [-r 3] [--no-warmup] [--seed 0] [--threads N] [--batch-size 512] [-o md|csv|json|jsonl]
//        [--results RESULTS.json] [--label L] [--gpu cuda]
//
// llama.cpp is node-llama-cpp 3.22.1's prebuilt CPU build (with --gpu cuda its CUDA build, every layer
// on the GPU) (tools/llama/setup.sh installs it; this
// script finds it in ${VLMBENCH_CACHE_DIR:-~/.cache/vlmbench}/llama.cpp/node-llama-cpp-3.22.1, or in
// VLMBENCH_LLAMA_DIR). It is loaded with `build: "never"`: no prebuilt binary, no run (never a compile).
//
// What is measured, test by test, as src/bench/mod.rs does (and llama-bench defines pp and tg):
//   - prompt ids: vlmbench's seeded generator (src/bench/mod.rs PromptIds: SplitMix64 from --seed,
//     id = next % vocab, added tokens skipped), one stream for the whole run, drawn in the same order
//     (each test: its warm-up, then each repetition). Vocabulary and skipped ids come from --model-dir
//     (the vlmbench checkpoint: config.json's vocab_size and tokenizer.json's added tokens, exactly
//     what vlmbench reads) or, without it, from the GGUF (its token count, and the tokens typed
//     unknown, control or user-defined: for Gemma 3 270M the same 6,414 ids as tokenizer.json's added
//     tokens below the vocabulary size, so the same prompts).
//   - ppN: N prompt tokens evaluated in one batch (split by --batch-size like llama-bench's n_batch)
//     with logits for the last one; rate = N / that time. (The last position's greedy pick, one argmax
//     over the vocabulary, is inside the time; vlmbench's pp stops at the logits.)
//   - tgN: a 1-token prompt, then N tokens generated greedily, EOS ignored (every token is fed back);
//     rate = (N - 1) / (time of the last token - time of the first): the tokens after the first over
//     their time, so the first token's prefill is excluded (src/engine/stats.rs decode_tps). Time to
//     first token: from the call to the first token id on the host.
//   - ppN+tgM: rate = (N + M) / total time.
//   - each repetition starts from an empty KV cache (vlmbench: a fresh decoder); each test runs once
//     to warm up first unless --no-warmup; -r repetitions give mean ± sample sd.
//   - peak memory: the process's resident-set high-water mark (VmHWM; reset before each repetition
//     through /proc/self/clear_refs where Linux allows it), the highest over the repetitions. It counts
//     the memory-mapped weights that were touched and Node's own heap; vlmbench's figure is MLX's
//     allocator peak (weights included), a close but not identical quantity. With --gpu: the GPU memory
//     in use after the test (llama.cpp's VRAM state: the whole device's, other processes included).
// Threads: all cores by default (--threads); node-llama-cpp's own default would be max(cores, 4).
// Output: the rows `vlmbench bench -o FORMAT` prints (same fields; program and versions in
// vlmbench_version, ggml's CPU variant in kernels), and with --results a vlmbench results file that
// `vlmbench compare` and `vlmbench chart` read (tools/llama/results.mjs). Progress goes to stderr.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseLengths, parseTest, testName, PromptIds, vocabFromCheckpoint, meanSd, rowsToResults, writeJson } from "./results.mjs";

const NODE_LLAMA_CPP_VERSION = "3.22.1";

class UsageError extends Error {}

function usage() {
  return `usage: node tools/llama/bench.mjs --gguf FILE [--model-dir DIR] [-p LENGTHS] [-n LENGTHS] [--test NAME]...
       [-r N] [--no-warmup] [--seed N] [--threads N] [--batch-size N] [-o md|csv|json|jsonl]
       [--results RESULTS.json] [--label LABEL] [--gpu cuda]
  --gguf FILE        the GGUF model llama.cpp runs
  --model-dir DIR    the vlmbench checkpoint of the same weights: prompt ids from its vocabulary
                     (default: from the GGUF's tokenizer)
  -p, --n-prompt     prompt lengths (default 512; "0": none), lists or ranges as vlmbench bench
  -n, --n-gen        generation lengths after a 1-token prompt (default 128; "0": none)
  --test NAME        extra tests: pp512, tg128, pp512+tg128 (repeatable)
  -r, --repetitions  measured runs per test (default 3)
  --no-warmup        skip each test's warm-up run
  --seed N           seed of the random prompts (default 0)
  --threads N        CPU threads (default: all cores, ${os.availableParallelism()})
  --batch-size N     llama.cpp batch size (n_batch = n_ubatch; default 512, at most the context size)
  -o, --output       md (default), csv, json, jsonl
  --results FILE     also write a vlmbench results file (for vlmbench compare / chart)
  --label LABEL      the run's label in the results file
                     (default "llama.cpp (node-llama-cpp ${NODE_LLAMA_CPP_VERSION}, <CPU variant>)")
  --gpu cuda         run every layer on the GPU with node-llama-cpp's prebuilt CUDA build
                     (@node-llama-cpp/linux-x64-cuda installed beside node-llama-cpp)
  env VLMBENCH_LLAMA_DIR: the install dir tools/llama/setup.sh printed`;
}

function parseArgs(argv) {
  const o = { nPrompt: "512", nGen: "128", tests: [], repetitions: 3, warmup: true, seed: 0n, threads: os.availableParallelism(), batchSize: 512, output: "md" };
  const int = (name, s, min) => {
    if (!/^\d+$/.test(s) || Number(s) < min) throw new UsageError(`${name} must be a whole number >= ${min}, not ${JSON.stringify(s)}`);
    return Number(s);
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let inline;
    const eq = a.indexOf("=");
    if (a.startsWith("--") && eq > 0) [a, inline] = [a.slice(0, eq), a.slice(eq + 1)];
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--gguf": o.gguf = value(); break;
      case "--model-dir": o.modelDir = value(); break;
      case "-p": case "--n-prompt": o.nPrompt = value(); break;
      case "-n": case "--n-gen": o.nGen = value(); break;
      case "--test": o.tests.push(value()); break;
      case "-r": case "--repetitions": o.repetitions = int(a, value(), 1); break;
      case "--no-warmup": o.warmup = false; break;
      case "--seed": { const s = value(); if (!/^\d+$/.test(s) || BigInt(s) >= 1n << 64n) throw new UsageError(`--seed must be a whole number below 2^64, not ${JSON.stringify(s)}`); o.seed = BigInt(s); break; }
      case "--threads": o.threads = int(a, value(), 1); break;
      case "--batch-size": o.batchSize = int(a, value(), 1); break;
      case "-o": case "--output": o.output = value(); if (!["md", "csv", "json", "jsonl"].includes(o.output)) throw new UsageError(`unknown output format ${JSON.stringify(o.output)}: use md, csv, json or jsonl`); break;
      case "--results": o.results = value(); break;
      case "--label": o.label = value(); break;
      case "--gpu": o.gpu = value(); if (o.gpu !== "cuda") throw new UsageError(`--gpu takes cuda, not ${JSON.stringify(o.gpu)}`); break;
      case "-h": case "--help": console.log(usage()); process.exit(0);
      default:
        if (!a.startsWith("-") && o.gguf === undefined) o.gguf = a;
        else throw new UsageError(`unknown argument ${JSON.stringify(argv[i])} (--help for usage)`);
    }
  }
  if (o.gguf === undefined) throw new UsageError("no model: give --gguf FILE (--help for usage)");
  const lengths = (flag, spec) => {
    try {
      return parseLengths(spec);
    } catch (e) {
      throw new UsageError(`${flag}: ${e.message}`);
    }
  };
  const tests = [
    ...lengths("-p", o.nPrompt).map((n) => ({ kind: "prompt", n })),
    ...lengths("-n", o.nGen).map((n) => ({ kind: "generate", n })),
  ];
  for (const t of o.tests) {
    try {
      tests.push(parseTest(t));
    } catch (e) {
      throw new UsageError(`--test: ${e.message}`);
    }
  }
  if (tests.length === 0) throw new UsageError("nothing to run: -p 0 and -n 0 with no --test");
  o.testList = tests;
  return o;
}

function checkGguf(file) {
  let fd;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    throw new Error(`cannot read the GGUF ${file}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  }
  try {
    if (!fs.fstatSync(fd).isFile()) throw new Error(`${file} is not a file`);
    const magic = Buffer.alloc(4);
    fs.readSync(fd, magic, 0, 4, 0);
    if (magic.toString("latin1") !== "GGUF") throw new Error(`${file} is not a GGUF file (no GGUF magic)`);
  } finally {
    fs.closeSync(fd);
  }
}

async function loadNodeLlamaCpp() {
  const cache = process.env.VLMBENCH_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "vlmbench");
  const dir = process.env.VLMBENCH_LLAMA_DIR || path.join(cache, "llama.cpp", `node-llama-cpp-${NODE_LLAMA_CPP_VERSION}`);
  const pkg = path.join(dir, "node_modules", "node-llama-cpp", "package.json");
  let version;
  try {
    version = JSON.parse(fs.readFileSync(pkg, "utf8")).version;
  } catch {
    throw new Error(`node-llama-cpp ${NODE_LLAMA_CPP_VERSION} is not installed in ${dir}: run tools/llama/setup.sh`);
  }
  if (version !== NODE_LLAMA_CPP_VERSION) throw new Error(`${dir} holds node-llama-cpp ${version}, not ${NODE_LLAMA_CPP_VERSION}: run tools/llama/setup.sh`);
  return import(path.join(dir, "node_modules", "node-llama-cpp", "dist", "index.js"));
}

// Peak resident memory: Linux's VmHWM, reset by writing 5 to /proc/self/clear_refs.
let peakResets = true;
function resetPeak() {
  if (!peakResets) return;
  try {
    fs.writeFileSync("/proc/self/clear_refs", "5");
  } catch {
    peakResets = false;
    console.error("bench.mjs: cannot reset the RSS high-water mark (/proc/self/clear_refs): peak memory is the process's since it started");
  }
}
function peakRss() {
  try {
    const m = fs.readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+)\s+kB/m);
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return process.resourceUsage().maxRSS * 1024;
}

/** The ggml CPU variant the loader picked (the libggml-cpu-<variant>.so mapped into the process). */
function cpuVariant() {
  try {
    const m = fs.readFileSync("/proc/self/maps", "utf8").match(/libggml-cpu-([A-Za-z0-9_]+)\.so/);
    if (m) return m[1];
  } catch {}
  return "cpu";
}

function cpuModel() {
  return (os.cpus()[0]?.model ?? "").trim();
}

const GREEDY = { temperature: 0, yieldEogToken: true };

/** Generates exactly n tokens greedily after `ids` (EOS fed back like any token). */
async function generateExactly(seq, ids, n) {
  const start = performance.now();
  const it = seq.evaluate(ids, GREEDY);
  let first = 0, last = 0;
  for (let i = 0; i < n; i++) {
    const r = await it.next();
    if (r.done) throw new Error(`llama.cpp stopped after ${i} of ${n} tokens`);
    last = performance.now();
    if (i === 0) first = last;
  }
  await it.return();
  const s = (ms) => ms / 1e3;
  const decode = s(last - first);
  return {
    ttft: s(first - start),
    decodeTps: n > 1 && decode > 0 ? (n - 1) / decode : 0,
    total: s(last - start),
  };
}

async function measure(seq, test, prompts, peakRss) {
  await seq.clearHistory(); // an empty KV cache, as vlmbench's fresh decoder
  resetPeak();
  switch (test.kind) {
    case "prompt": {
      const ids = prompts.next(test.n);
      const start = performance.now();
      const it = seq.evaluate(ids, GREEDY);
      const r = await it.next(); // the batch, and the last position's logits
      const seconds = (performance.now() - start) / 1e3;
      await it.return();
      if (r.done) throw new Error("llama.cpp returned no logits for the prompt");
      return { tps: test.n / seconds, ttft: null, peak: await peakRss() };
    }
    case "generate": {
      const g = await generateExactly(seq, prompts.next(1), test.n);
      return { tps: g.decodeTps, ttft: g.ttft, peak: await peakRss() };
    }
    case "prompt_generate": {
      const g = await generateExactly(seq, prompts.next(test.prompt), test.gen);
      return { tps: (test.prompt + test.gen) / g.total, ttft: g.ttft, peak: await peakRss() };
    }
  }
  throw new Error(`unknown test ${test.kind}`);
}

function humanBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${bytes} B` : `${v.toFixed(2)} ${units[u]}`;
}

function writeRows(rows, format) {
  const out = process.stdout;
  if (format === "json") out.write(JSON.stringify(rows, null, 2) + "\n");
  else if (format === "jsonl") for (const r of rows) out.write(JSON.stringify(r) + "\n");
  else if (format === "csv") {
    const f = (s) => (/[,"\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    out.write("model,model_size_bytes,backend,device,dtype,test,n_prompt,n_gen,tps_mean,tps_sd,ttft_s_mean,peak_memory_bytes,mlx_version,kernels,prefill\n");
    for (const r of rows)
      out.write([f(r.model), r.model_size_bytes, r.backend, f(r.device), r.dtype, r.test, r.n_prompt, r.n_gen, r.tps_mean.toFixed(4), r.tps_sd.toFixed(4), r.ttft_s_mean == null ? "" : r.ttft_s_mean.toFixed(4), r.peak_memory_bytes, f(r.mlx_version), f(r.kernels), f(r.prefill)].join(",") + "\n");
  } else {
    const header = ["model", "size", "backend", "dtype", "test", "t/s", "ttft s", "peak mem"];
    const cells = rows.map((r) => [r.model, humanBytes(r.model_size_bytes), r.backend, r.dtype, r.test, `${r.tps_mean.toFixed(2)} ± ${r.tps_sd.toFixed(2)}`, r.ttft_s_mean == null ? "-" : r.ttft_s_mean.toFixed(3), humanBytes(r.peak_memory_bytes)]);
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
    const line = (c) => "| " + c.map((x, i) => x.padEnd(widths[i])).join(" | ") + " |\n";
    out.write(line(header) + "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|\n" + cells.map(line).join(""));
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  checkGguf(o.gguf);
  let vocab = o.modelDir ? vocabFromCheckpoint(o.modelDir) : null;

  const { getLlama, LlamaLogLevel, GgufFileType } = await loadNodeLlamaCpp();
  const llama = await getLlama({
    gpu: o.gpu ?? false,
    build: "never", // prebuilt binaries only: a missing one is an error, never a compile
    usePrebuiltBinaries: true,
    skipDownload: true,
    progressLogs: Boolean(o.gpu), // on a GPU, say why a CUDA build does not load
    maxThreads: 0, // the context's thread count is exact
    logLevel: LlamaLogLevel.error,
    logger: (level, message) => console.error(`llama.cpp: ${message.trimEnd()}`),
  });
  const rssBefore = process.memoryUsage().rss;
  const model = await llama.loadModel({ modelPath: o.gguf, gpuLayers: o.gpu ? "max" : 0 });

  // The GGUF's file type and, without --model-dir, its vocabulary, from the metadata
  // node-llama-cpp read when loading (reading the file again would only grow the heap).
  const metadata = model.fileInfo.metadata;
  const fileType = GgufFileType[metadata?.general?.file_type]?.replace(/^MOSTLY_/, "") ?? "unknown";
  if (!vocab) {
    const types = metadata?.tokenizer?.ggml?.token_type;
    if (!Array.isArray(types) || types.length === 0) throw new Error(`${o.gguf} has no tokenizer.ggml.token_type: give --model-dir for the prompt ids`);
    // GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    const special = new Set();
    types.forEach((t, id) => { if (t === 2 || t === 3 || t === 4) special.add(id); });
    vocab = { vocab: types.length, special, source: `${o.gguf} (token count; unknown, control and user-defined tokens skipped)` };
  }
  console.error(`bench.mjs: prompt ids: vlmbench's generator, seed ${o.seed}, vocabulary ${vocab.vocab}, ${vocab.special.size} ids skipped, from ${vocab.source}`);

  const need = Math.max(...o.testList.map((t) => (t.kind === "prompt" ? t.n : t.kind === "generate" ? 1 + t.n : t.prompt + t.gen)));
  const contextSize = Math.ceil(need / 256) * 256;
  const batchSize = Math.min(o.batchSize, contextSize);
  const context = await model.createContext({ contextSize, batchSize, threads: o.threads, sequences: 1 });
  const seq = context.getSequence();
  const variant = o.gpu ? `${o.gpu} (${(await llama.getGpuDeviceNames()).join(", ")})` : cpuVariant();
  const peak = o.gpu ? async () => (await llama.getVramState()).used : peakRss;
  const release = llama.llamaCppRelease?.release ?? "?";
  console.error(`bench.mjs: llama.cpp ${release} (node-llama-cpp ${NODE_LLAMA_CPP_VERSION}, ${llama.buildType}, ggml ${o.gpu ? "GPU" : "CPU variant"} ${variant}), ${context.currentThreads} threads, context ${context.contextSize}, batch ${context.batchSize}, flash attention ${context.flashAttention}; ${cpuModel()}; process RSS ${(rssBefore / 1e6).toFixed(0)} MB before the model, ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB with it`);

  const modelSize = fs.statSync(o.gguf).size;
  const prompts = new PromptIds(o.seed, vocab.vocab, vocab.special);
  const rows = [];
  for (const test of o.testList) {
    if (o.warmup) await measure(seq, test, prompts, peak);
    const samples = [];
    for (let r = 0; r < o.repetitions; r++) samples.push(await measure(seq, test, prompts, peak));
    const tps = samples.map((s) => s.tps);
    const [mean, sd] = meanSd(tps);
    const ttfts = samples.map((s) => s.ttft).filter((t) => t != null);
    const [nPrompt, nGen] = test.kind === "prompt" ? [test.n, 0] : test.kind === "generate" ? [1, test.n] : [test.prompt, test.gen];
    const row = {
      model: path.basename(o.gguf),
      model_size_bytes: modelSize,
      backend: o.gpu ?? "cpu",
      device: o.gpu ? `${o.gpu}:0 ${variant}` : `cpu:0 ${cpuModel()}`.trim(), // as vlmbench names the CPU device
      dtype: fileType,
      test: testName(test),
      n_prompt: nPrompt,
      n_gen: nGen,
      tps_samples: tps,
      tps_mean: mean,
      tps_sd: sd,
      ttft_s_mean: ttfts.length ? meanSd(ttfts)[0] : null,
      peak_memory_bytes: Math.max(...samples.map((s) => s.peak)),
      mlx_version: "none",
      vlmbench_version: `llama.cpp ${release} (node-llama-cpp ${NODE_LLAMA_CPP_VERSION})`,
      kernels: o.gpu ? `ggml-${o.gpu}` : `ggml-cpu-${variant}, ${context.currentThreads} threads`,
      prefill: `batch ${context.batchSize}`,
    };
    console.error(`${row.test}: ${mean.toFixed(2)} ± ${sd.toFixed(2)} t/s`);
    if (o.output === "jsonl") writeRows([row], "jsonl");
    rows.push(row);
  }
  if (o.output !== "jsonl") writeRows(rows, o.output);
  if (o.results) writeJson(o.results, rowsToResults(rows, o.label ?? `llama.cpp (node-llama-cpp ${NODE_LLAMA_CPP_VERSION}, ${variant})`));
  await context.dispose();
  await model.dispose();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`error: ${e instanceof UsageError ? e.message : (e?.message ?? String(e)).split("\n")[0]}`);
    process.exit(1);
  },
);
