// vlmbench's bench rules and file formats in JavaScript, shared by tools/llama/bench.mjs and
// tools/llama/side_by_side.sh:
//   - parseLengths: `vlmbench bench -p/-n` length lists and ranges (src/bench/tests_spec.rs);
//   - PromptIds: the seeded prompt ids of `vlmbench bench` (src/bench/mod.rs PromptIds: SplitMix64,
//     ids below the vocabulary size, added tokens skipped), bit for bit;
//   - meanSd: mean and sample standard deviation (src/bench/mod.rs mean_sd);
//   - rowsToResults: `vlmbench bench -o json` rows (src/bench/mod.rs BenchRow) as a vlmbench results
//     file (src/bench/results.rs ResultsFile, kind prompt_table), the format `vlmbench compare` and
//     the throughput panels of `vlmbench chart` read (they do not read bench rows: chart reads them
//     only as tensor-parallel scaling runs);
//   - poolRows: several runs' rows of the same tests (alternated rounds) as one row per test;
//   - sweepToRows: tools/reference/bench_reference.py's results (mlx-vlm: one generation of P prompt
//     tokens + N per file, no repetitions) as rows ppP (its prefill rate) and tgN (its decode rate,
//     after that P-token prompt rather than a 1-token one), one sample per file.
//
// As a command, pools bench-row files (rounds) and writes the pooled rows and/or a results file:
//   node tools/llama/results.mjs [--label L] [--rows-out POOLED.json] [--out RESULTS.json] ROUNDS.json...
//   node tools/llama/results.mjs --from-sweep P,N [--label L] [--rows-out R] [--out O] MLX_VLM_ROUNDS.json...

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** `vlmbench bench`'s length lists: "128,512", "64-1024*2" (doubling), "100-500+100" (adding). */
export function parseLengths(spec) {
  if (spec.trim() === "0") return [];
  const positive = (s, part) => {
    const t = s.trim();
    if (!/^\d+$/.test(t) || Number(t) === 0) throw new Error(`bad length ${JSON.stringify(t)} in ${JSON.stringify(part)}: lengths are positive integers`);
    return Number(t);
  };
  const out = [];
  for (const part of spec.split(",").map((p) => p.trim()).filter((p) => p)) {
    const m = part.match(/^([^*+]*)([*+])(.*)$/);
    if (m) {
      const doubling = m[2] === "*";
      const dash = m[1].indexOf("-");
      if (dash < 0) throw new Error(`range ${JSON.stringify(part)} needs START-END${doubling ? "*FACTOR" : "+STEP"}`);
      const lo = positive(m[1].slice(0, dash), part), hi = positive(m[1].slice(dash + 1), part), step = positive(m[3], part);
      if (hi < lo) throw new Error(`range ${JSON.stringify(part)} ends before it starts`);
      if (doubling && step < 2) throw new Error(`range ${JSON.stringify(part)}: the factor must be at least 2`);
      for (let n = lo; n <= hi; n = doubling ? n * step : n + step) out.push(n);
    } else {
      out.push(positive(part, part));
    }
  }
  if (out.length === 0) throw new Error(`no lengths in ${JSON.stringify(spec)}`);
  return out;
}

/** A bench test by llama-bench's name: pp512, tg128, pp512+tg128. */
export function parseTest(name) {
  let m;
  if ((m = name.match(/^pp(\d+)$/)) && +m[1] > 0) return { kind: "prompt", n: +m[1] };
  if ((m = name.match(/^tg(\d+)$/)) && +m[1] > 0) return { kind: "generate", n: +m[1] };
  if ((m = name.match(/^pp(\d+)\+tg(\d+)$/)) && +m[1] > 0 && +m[2] > 0) return { kind: "prompt_generate", prompt: +m[1], gen: +m[2] };
  throw new Error(`unknown test ${JSON.stringify(name)}: use ppN, tgN or ppN+tgM (text only: llama.cpp here has no img+tgN)`);
}

export function testName(t) {
  switch (t.kind) {
    case "prompt": return `pp${t.n}`;
    case "generate": return `tg${t.n}`;
    case "prompt_generate": return `pp${t.prompt}+tg${t.gen}`;
  }
  throw new Error(`unknown test kind ${t.kind}`);
}

const MASK = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;

/** vlmbench's seeded prompt ids (src/bench/mod.rs PromptIds), one stream per bench run. */
export class PromptIds {
  constructor(seed, vocab, special) {
    this.state = (BigInt(seed) ^ GOLDEN) & MASK;
    this.vocab = BigInt(vocab);
    this.special = special; // Set of ids
  }
  nextU64() {
    this.state = (this.state + GOLDEN) & MASK;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
    return z ^ (z >> 31n);
  }
  next(n) {
    const ids = [];
    while (ids.length < n) {
      const id = Number(this.nextU64() % this.vocab);
      if (!this.special.has(id)) ids.push(id);
    }
    return ids;
  }
}

/** vlmbench's vocabulary and excluded ids from its checkpoint directory: config.json's
 *  (text_config's) vocab_size and tokenizer.json's added tokens, as `vlmbench bench` reads them. */
export function vocabFromCheckpoint(dir) {
  const read = (name) => {
    const file = path.join(dir, name);
    try {
      return JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (e) {
      throw new Error(`cannot read ${file}: ${e.code === "ENOENT" ? "no such file (is it a vlmbench checkpoint directory?)" : e.message}`);
    }
  };
  const config = read("config.json");
  const vocab = (config.text_config ?? config).vocab_size;
  if (!Number.isInteger(vocab) || vocab <= 0) throw new Error(`${dir}/config.json has no vocab_size`);
  const special = new Set((read("tokenizer.json").added_tokens ?? []).map((t) => t.id));
  return { vocab, special, source: `${dir} (config.json vocab_size, tokenizer.json added tokens)` };
}

export function meanSd(xs) {
  if (xs.length === 0) return [0, 0];
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length < 2) return [mean, 0];
  const v = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1);
  return [mean, Math.sqrt(v)];
}

/** One results-file measurement from one bench row (src/bench/results.rs Measurement). A test
 *  fills only the figures it measures (others are 0): pp the prefill rate, tg the decode rate and
 *  the time to first token (of its 1-token prompt), ppN+tgM the time to first token. total_s is the
 *  mean time of one repetition, recovered from each repetition's rate: pp N/rate, tg ttft +
 *  (N-1)/rate, ppN+tgM (N+M)/rate. mlx-vlm's definitions (reference_*) follow stats.rs. */
export function rowToMeasurement(row) {
  const mean = (xs) => meanSd(xs)[0];
  const ttft = row.ttft_s_mean ?? 0;
  const m = {
    label: row.test,
    has_image: row.test.startsWith("img"),
    prompt_tokens: row.n_prompt,
    gen_tokens: row.n_gen,
    prefill_tps: 0,
    decode_tps: 0,
    time_to_first_token_s: ttft,
    vision_encode_s: 0,
    total_s: 0,
    peak_memory_bytes: row.peak_memory_bytes,
    reference_prompt_tps: 0,
    reference_generation_tps: 0,
  };
  const samples = row.tps_samples.filter((x) => x > 0);
  if (/^pp\d+$/.test(row.test)) {
    m.prefill_tps = m.reference_prompt_tps = row.tps_mean;
    m.total_s = mean(samples.map((x) => row.n_prompt / x));
  } else if (/^tg\d+$/.test(row.test)) {
    m.decode_tps = row.tps_mean;
    m.reference_generation_tps = row.n_gen > 1 ? row.tps_mean * row.n_gen / (row.n_gen - 1) : 0;
    m.reference_prompt_tps = ttft > 0 ? row.n_prompt / ttft : 0;
    m.total_s = ttft + mean(samples.map((x) => (row.n_gen - 1) / x));
  } else if (/^pp\d+\+tg\d+$/.test(row.test)) {
    m.total_s = mean(samples.map((x) => (row.n_prompt + row.n_gen) / x));
    m.reference_prompt_tps = ttft > 0 ? row.n_prompt / ttft : 0;
  } else {
    // img+tgN: rate = prompt tokens over time to first token.
    m.prefill_tps = m.reference_prompt_tps = row.tps_mean;
    m.total_s = ttft;
  }
  return m;
}

/** A results file (kind prompt_table) from bench rows: `vlmbench compare` and `vlmbench chart` read it. */
export function rowsToResults(rows, label) {
  if (!Array.isArray(rows) || rows.length === 0) throw new Error("no bench rows");
  const r = rows[0];
  return {
    kind: "prompt_table",
    run: {
      label: label ?? `${r.model} (${r.backend})`,
      model: r.model,
      backend: r.backend,
      device: r.device,
      dtype: r.dtype,
      mlx_version: r.mlx_version,
      vlmbench_version: r.vlmbench_version,
      kernels: r.kernels ?? "",
      prefill: r.prefill ?? "",
    },
    measurements: rows.map(rowToMeasurement),
  };
}

/** Rounds of the same tests as one row per test: every repetition's rate pooled (mean ± sd over
 *  all), time to first token averaged over the rounds, the highest peak memory. */
export function poolRows(rounds) {
  if (rounds.length === 0) throw new Error("no bench rows to pool");
  const tests = rounds[0].map((r) => r.test);
  for (const rows of rounds) {
    const these = rows.map((r) => r.test).join(",");
    if (these !== tests.join(",")) throw new Error(`rounds hold different tests (${tests.join(",")} vs ${these})`);
  }
  return tests.map((test, i) => {
    const all = rounds.map((rows) => rows[i]);
    const samples = all.flatMap((r) => r.tps_samples);
    const [mean, sd] = meanSd(samples);
    const ttfts = all.map((r) => r.ttft_s_mean).filter((t) => t != null);
    return {
      ...all[0],
      tps_samples: samples,
      tps_mean: mean,
      tps_sd: sd,
      ttft_s_mean: ttfts.length ? meanSd(ttfts)[0] : null,
      peak_memory_bytes: Math.max(...all.map((r) => r.peak_memory_bytes)),
    };
  });
}

/** bench_reference.py results files (one per round) as bench rows ppP and tgN. */
export function sweepToRows(files, p, n) {
  const runs = files.map((f) => {
    try {
      return JSON.parse(fs.readFileSync(f, "utf8"));
    } catch (e) {
      throw new Error(`cannot read ${f}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
    }
  });
  const ms = runs.map((r, i) => {
    const m = r.measurements?.find((x) => x.label === `pp${p}`);
    if (!m || m.gen_tokens !== n) throw new Error(`${files[i]} has no point pp${p} with ${n} generated tokens`);
    return m;
  });
  const run = runs[0].run;
  const peak = Math.max(...ms.map((m) => m.peak_memory_bytes));
  const row = (test, nPrompt, nGen, samples, ttft) => {
    const [mean, sd] = meanSd(samples);
    return {
      model: run.model, model_size_bytes: 0, backend: run.backend, device: run.device, dtype: run.dtype,
      test, n_prompt: nPrompt, n_gen: nGen, tps_samples: samples, tps_mean: mean, tps_sd: sd,
      ttft_s_mean: ttft, peak_memory_bytes: peak, mlx_version: run.mlx_version,
      vlmbench_version: run.vlmbench_version, kernels: run.kernels ?? "", prefill: run.prefill ?? "",
    };
  };
  return [
    row(`pp${p}`, p, 0, ms.map((m) => m.prefill_tps), null),
    row(`tg${n}`, p, n, ms.map((m) => m.decode_tps), meanSd(ms.map((m) => m.time_to_first_token_s))[0]),
  ];
}

export function readRows(file) {
  let rows;
  try {
    rows = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`cannot read ${file}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  }
  if (!Array.isArray(rows) || rows.length === 0 || rows.some((r) => typeof r.test !== "string" || !Array.isArray(r.tps_samples)))
    throw new Error(`${file} is not \`vlmbench bench -o json\` output (a JSON list of bench rows)`);
  return rows;
}

/** Writes JSON whole (a .partial file renamed), like vlmbench's results files. */
export function writeJson(file, value) {
  const tmp = `${file}.partial`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + "\n");
  fs.renameSync(tmp, file);
}

function main(argv) {
  let label, rowsOut, out, fromSweep;
  const inputs = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--label") label = value();
    else if (a === "--rows-out") rowsOut = value();
    else if (a === "--out") out = value();
    else if (a === "--from-sweep") {
      const m = value().match(/^(\d+),(\d+)$/);
      if (!m || +m[1] === 0 || +m[2] === 0) throw new Error("--from-sweep takes P,N (the prompt and generation lengths)");
      fromSweep = [+m[1], +m[2]];
    }
    else if (a === "-h" || a === "--help") {
      process.stdout.write("usage: node tools/llama/results.mjs [--from-sweep P,N] [--label L] [--rows-out POOLED.json] [--out RESULTS.json] ROUNDS.json...\n");
      return;
    } else if (a.startsWith("-")) throw new Error(`unknown option ${a}`);
    else inputs.push(a);
  }
  if (inputs.length === 0) throw new Error("give one or more `vlmbench bench -o json` files");
  if (!rowsOut && !out) throw new Error("give --out RESULTS.json and/or --rows-out POOLED.json");
  const pooled = fromSweep ? sweepToRows(inputs, ...fromSweep) : poolRows(inputs.map(readRows));
  if (rowsOut) writeJson(rowsOut, pooled);
  if (out) writeJson(out, rowsToResults(pooled, label));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error(`error: ${e.message}`);
    process.exit(1);
  }
}
