#!/usr/bin/env bash
# llama.cpp beside vlmbench on the same weights (issues #24, #25): one script, alternated rounds.
#
#   tools/llama/side_by_side.sh MODEL_DIR GGUF OUT_DIR [-p 64] [-n 32] [-r 3] [--rounds 3]
#                               [--threads N] [--seed 0] [--mlx-vlm[=float32]] [--mlx-lm] [--gpu cuda]
#   e.g. tools/llama/side_by_side.sh ~/.cache/vlmbench/gemma3-270m/mlx-gguf \
#          ~/.cache/vlmbench/gemma3-270m/gemma-3-270m-q4_k_m.gguf charts/cpu-gemma3-270m
#
# MODEL_DIR is vlmbench's checkpoint of the weights in GGUF (tools/real-weights/fetch_gemma3_270m.sh
# makes both). Each round runs llama.cpp (tools/llama/bench.mjs, node-llama-cpp's prebuilt CPU build)
# and then `vlmbench bench --model MODEL_DIR -p P -n N -r R -o json`: the same tests (ppP, tgN), the
# same prompt ids (vlmbench's seeded generator over MODEL_DIR's vocabulary), EOS ignored, each test
# warmed up once and repeated R times, llama-bench's pp and tg definitions. Rounds alternate
# (A B A B A B) so a machine that slows down mid-run slows both. vlmbench runs with its defaults
# (float32 compute on the CPU, all cores); llama.cpp with --threads (default: all cores; vlmbench has
# no thread option, so keep the default for a fair pair).
#
# --mlx-vlm adds a third program, mlx-vlm 0.7.10 (tools/reference/bench_reference.py on MODEL_DIR, one
# generation of P prompt tokens + N per round, no repetitions): its ppP row is that prompt's prefill
# rate (prompt tokens over time to first token, the first pick included) and its tgN row the decode
# rate and time to first token after that P-token prompt, not after a 1-token one. mlx-vlm 0.7.10
# cannot load vlmbench's import of Gemma 3 270M (it expects a dense 262144 x 640 lm_head); it loads
# Gemma 4 checkpoints. (For Gemma 3 the correctness reference is mlx-lm: use --mlx-lm.)
#
# --gpu cuda runs llama.cpp's prebuilt CUDA build with every layer on the GPU (bench.mjs --gpu cuda:
# @node-llama-cpp/linux-x64-cuda must sit beside node-llama-cpp in VLMBENCH_LLAMA_DIR) and vlmbench
# with its defaults on a CUDA build (bfloat16 compute on the GPU).
#
# --mlx-vlm=float32 runs it with every floating parameter cast to float32 (vlmbench's CPU default; on a
# CPU its published bfloat16 is many times slower).
#
# --mlx-lm adds mlx-lm 0.32.2 (same MLX as vlmbench) as a third program, timed as vlmbench bench times
# itself: tools/reference/bench_mlx_lm.py on MODEL_DIR, run after vlmbench in each round (A B C A B C),
# writes the same bench rows (ppP, tgN; same prompt ids, EOS ignored, one warm-up and R repetitions)
# through mlx-lm's model call and cache (not its generate()), with every floating parameter cast to
# float32 (vlmbench's CPU default). It loads vlmbench's import of Gemma 3 270M.
# --int8 adds vlmbench with VLMBENCH_CPU_ACTIVATIONS=int8 (its CPU one-row 4-bit products round the
# activations to 8 bits per block of 32, as llama.cpp's CPU products do) right after vlmbench in each
# round, labelled "vlmbench (int8 activations)", compared with llama.cpp beside the default.
#
# Writes into OUT_DIR:
#   llama.cpp-roundK.json, vlmbench-roundK.json   each round's `bench -o json` rows (same schema;
#                                                 mlx-lm-roundK.json with --mlx-lm)
#   llama.cpp.json, vlmbench.json                 the rounds pooled (every repetition; mean ± sd;
#                                                 mlx-lm.json with --mlx-lm)
#   *.results.json                                the same as vlmbench results files (compare/chart)
#   machine.txt                                   CPU, cores, memory, every program's version
#   compare.md                                    `vlmbench compare` (llama.cpp = A, the baseline),
#                                                 pooled, then round by round; --mlx-lm adds mlx-lm
#                                                 (A) vs vlmbench (B), pooled and by round
#   throughput_*.png                              `vlmbench chart` of each program
# Environment: VLMBENCH_BIN (default target/release/vlmbench), VLMBENCH_REFERENCE_PYTHON (--mlx-vlm,
# --mlx-lm; default: tools/reference/setup.sh's venv), VLMBENCH_LLAMA_DIR (an install of node-llama-cpp
# made elsewhere, e.g. carried to a machine without npm; default: tools/llama/setup.sh's).
set -euo pipefail

die() { echo "side_by_side.sh: error: $*" >&2; exit 1; }
log() { echo "side_by_side.sh: $*" >&2; }
usage="usage: tools/llama/side_by_side.sh MODEL_DIR GGUF OUT_DIR [-p 64] [-n 32] [-r 3] [--rounds 3] [--threads N] [--seed 0] [--mlx-vlm[=float32]] [--mlx-lm] [--int8] [--gpu cuda]"

here="$(pwd)"
abs() { case "$1" in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }
pos=()
p=64; n=32; r=3; rounds=3; threads=""; seed=0; mlx_vlm=0; mlx_vlm_dtype=(); vlm_label=mlx-vlm; mlx_lm=0; int8=0; gpu=""; where="the CPU"
while [ $# -gt 0 ]; do
  case "$1" in
    -p|-n|-r|--rounds|--threads|--seed) [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in -p) p="$2" ;; -n) n="$2" ;; -r) r="$2" ;; --rounds) rounds="$2" ;; --threads) threads="$2" ;; --seed) seed="$2" ;; esac
      shift 2 ;;
    --mlx-vlm) mlx_vlm=1; shift ;;
    --int8) int8=1; shift ;;
    --mlx-vlm=float32) mlx_vlm=1; mlx_vlm_dtype=(--dtype float32); vlm_label="mlx-vlm (float32)"; shift ;;
    --mlx-lm) mlx_lm=1; shift ;;
    --gpu) [ "${2:-}" = cuda ] || die "--gpu takes cuda (got '${2:-}')"; gpu=cuda; where="a CUDA GPU"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) die "unknown option $1 ($usage)" ;;
    *) pos+=("$1"); shift ;;
  esac
done
[ ${#pos[@]} -eq 3 ] || die "$usage"
model="$(abs "${pos[0]}")"; gguf="$(abs "${pos[1]}")"; out="$(abs "${pos[2]}")"
[ -z "${VLMBENCH_BIN:-}" ] || VLMBENCH_BIN="$(abs "$VLMBENCH_BIN")"
[ -z "${VLMBENCH_REFERENCE_PYTHON:-}" ] || VLMBENCH_REFERENCE_PYTHON="$(abs "$VLMBENCH_REFERENCE_PYTHON")"
cd "$(dirname "$0")/../.."
for v in "$p" "$n" "$r" "$rounds" ${threads:+"$threads"}; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "-p, -n, -r, --rounds and --threads take one positive whole number each (got '$v')"
done
[[ "$seed" =~ ^[0-9]+$ ]] || die "--seed takes a whole number (got '$seed')"

command -v node >/dev/null 2>&1 || die "node not found: install Node.js 20 or newer (llama.cpp runs through node-llama-cpp)"
[ -f "$gguf" ] || die "GGUF $gguf not found (tools/real-weights/fetch_gemma3_270m.sh downloads Gemma 3 270M's)"
[ -f "$model/config.json" ] || die "$model is not a vlmbench checkpoint directory (no config.json)"
bin="${VLMBENCH_BIN:-target/release/vlmbench}"
[ -x "$bin" ] || die "$bin not found: cargo build --release first, or set VLMBENCH_BIN"
if [ "$mlx_vlm" = 1 ] || [ "$mlx_lm" = 1 ]; then
  py="${VLMBENCH_REFERENCE_PYTHON:-$(tools/reference/setup.sh | tail -n 1)}"
  [ -x "$py" ] || die "no Python for mlx-vlm/mlx-lm ($py): run tools/reference/setup.sh or set VLMBENCH_REFERENCE_PYTHON"
fi
VLMBENCH_LLAMA_DIR="${VLMBENCH_LLAMA_DIR:-$(tools/llama/setup.sh | tail -n 1)}"
export VLMBENCH_LLAMA_DIR
mkdir -p "$out"
# Settle first: a run started right after other work (a build, or the previous table of the same
# script) would see that work's threads in the load average and be flagged. Waits up to 3 minutes
# for the 1-minute load to drop below the core count.
settled=0
while [ "$settled" -lt 180 ] && awk -v c="$(nproc)" -v a="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)" 'BEGIN { exit !(a + 0 >= c) }'; do
  [ "$settled" = 0 ] && log "waiting for the load average to drop below $(nproc) before starting"
  sleep 10; settled=$((settled + 10))
done
load_start="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
# The checkout the binary stands for, read now: this run's own output under OUT_DIR does not count.
checkout="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
outside=(); case "$(abs "$out")/" in "$(git rev-parse --show-toplevel 2>/dev/null)"/*) outside=(":(exclude)$out") ;; esac
git diff --quiet HEAD -- . "${outside[@]}" || checkout+=" with uncommitted changes"

llama_args=(--gguf "$gguf" --model-dir "$model" -p "$p" -n "$n" -r "$r" --seed "$seed" -o json)
[ -n "$threads" ] && llama_args+=(--threads "$threads")
[ -n "$gpu" ] && llama_args+=(--gpu "$gpu")
llama_rounds=(); vlm_rounds=(); mlx_rounds=(); lm_rounds=(); int8_rounds=()
int8_label="vlmbench (int8 activations)"
for k in $(seq 1 "$rounds"); do
  log "round $k of $rounds: llama.cpp"
  node tools/llama/bench.mjs "${llama_args[@]}" > "$out/llama.cpp-round$k.json"
  llama_rounds+=("$out/llama.cpp-round$k.json")
  log "round $k of $rounds: vlmbench"
  "$bin" bench --model "$model" -p "$p" -n "$n" -r "$r" --seed "$seed" -o json > "$out/vlmbench-round$k.json"
  vlm_rounds+=("$out/vlmbench-round$k.json")
  if [ "$int8" = 1 ]; then
    log "round $k of $rounds: vlmbench, int8 activations"
    VLMBENCH_CPU_ACTIVATIONS=int8 "$bin" bench --model "$model" -p "$p" -n "$n" -r "$r" --seed "$seed" -o json > "$out/vlmbench-int8-round$k.json"
    int8_rounds+=("$out/vlmbench-int8-round$k.json")
  fi
  if [ "$mlx_vlm" = 1 ]; then
    log "round $k of $rounds: mlx-vlm"
    "$py" tools/reference/bench_reference.py --model "$model" --lengths "$p" --gen "$n" --seed "$seed" "${mlx_vlm_dtype[@]}" \
      --label "$vlm_label" --out "$out/mlx-vlm-round$k.sweep.json" 2> >(grep -v -i warn >&2) >&2 \
      || die "mlx-vlm (tools/reference/bench_reference.py) failed on $model"
    mlx_rounds+=("$out/mlx-vlm-round$k.sweep.json")
  fi
  if [ "$mlx_lm" = 1 ]; then
    log "round $k of $rounds: mlx-lm"
    "$py" tools/reference/bench_mlx_lm.py --model "$model" -p "$p" -n "$n" -r "$r" --seed "$seed" --dtype float32 \
      --out "$out/mlx-lm-round$k.json" 2> >(grep -v -i warn >&2) >&2 \
      || die "mlx-lm (tools/reference/bench_mlx_lm.py) failed on $model"
    lm_rounds+=("$out/mlx-lm-round$k.json")
  fi
done

lm_label="mlx-lm (float32)"
llama_label="$(node -e 'const r = require(process.argv[1])[0]; console.log(`llama.cpp (node-llama-cpp 3.22.1, ${r.kernels.split(",")[0].replace(/^ggml-cpu-/, "")})`)' "$(realpath "${llama_rounds[0]}")")"
node tools/llama/results.mjs --label "$llama_label" --rows-out "$out/llama.cpp.json" --out "$out/llama.cpp.results.json" "${llama_rounds[@]}"
node tools/llama/results.mjs --label vlmbench --rows-out "$out/vlmbench.json" --out "$out/vlmbench.results.json" "${vlm_rounds[@]}"
for k in $(seq 1 "$rounds"); do
  node tools/llama/results.mjs --label "$llama_label" --out "$out/llama.cpp-round$k.results.json" "$out/llama.cpp-round$k.json"
  node tools/llama/results.mjs --label vlmbench --out "$out/vlmbench-round$k.results.json" "$out/vlmbench-round$k.json"
  if [ "$int8" = 1 ]; then
    node tools/llama/results.mjs --label "$int8_label" --out "$out/vlmbench-int8-round$k.results.json" "$out/vlmbench-int8-round$k.json"
  fi
  if [ "$mlx_lm" = 1 ]; then
    node tools/llama/results.mjs --label "$lm_label" --out "$out/mlx-lm-round$k.results.json" "$out/mlx-lm-round$k.json"
  fi
done
charted=("$out/llama.cpp.results.json" "$out/vlmbench.results.json")
if [ "$int8" = 1 ]; then
  node tools/llama/results.mjs --label "$int8_label" --rows-out "$out/vlmbench-int8.json" --out "$out/vlmbench-int8.results.json" "${int8_rounds[@]}"
  charted+=("$out/vlmbench-int8.results.json")
fi
if [ "$mlx_lm" = 1 ]; then
  node tools/llama/results.mjs --label "$lm_label" --rows-out "$out/mlx-lm.json" --out "$out/mlx-lm.results.json" "${lm_rounds[@]}"
  charted+=("$out/mlx-lm.results.json")
fi
if [ "$mlx_vlm" = 1 ]; then
  node tools/llama/results.mjs --from-sweep "$p,$n" --label "$vlm_label" --rows-out "$out/mlx-vlm.json" \
    --out "$out/mlx-vlm.results.json" "${mlx_rounds[@]}"
  charted+=("$out/mlx-vlm.results.json")
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || uname -p)"
  echo "cores: $(nproc)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || echo '?')"
  echo "kernel: $(uname -srm)"
  if [ -n "$gpu" ]; then echo "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo '?')"; fi
  echo "load average (1, 5, 15 min) at the start (after waiting ${settled} s for it to settle): $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
  # The load at the end counts the benchmark's own threads; only the start says whether other work ran.
  if awk -v c="$(nproc)" -v a="${load_start%% *}" 'BEGIN { exit !(a + 0 > c) }'; then
    echo "  WARNING: load above the core count: other work shared the CPU (llama.cpp's threads wait for each other"
    echo "  at every barrier and slow down far more than vlmbench on a shared CPU): these figures are not comparable"
  fi
  echo "llama.cpp: $(node -p 'const r = require(process.argv[1])[0]; `${r.vlmbench_version}, ${r.kernels}, ${r.prefill}`' "$(realpath "$out/llama.cpp.json")"), node $(node --version)"
  echo "vlmbench: $("$bin" --version), MLX $(node -p 'const r = require(process.argv[1])[0]; `${r.mlx_version}, ${r.dtype}, kernels ${r.kernels}, prefill ${r.prefill}`' "$(realpath "$out/vlmbench.json")"), binary of $(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ), checkout at $checkout"
  if [ "$mlx_lm" = 1 ]; then echo "mlx-lm: $(node -p 'const r = require(process.argv[1])[0]; `${r.vlmbench_version}, MLX ${r.mlx_version}, ${r.dtype}, prefill ${r.prefill}`' "$(realpath "$out/mlx-lm.json")"), python $("$py" -c 'import platform; print(platform.python_version())')"; fi
  if [ "$mlx_vlm" = 1 ]; then echo "mlx-vlm: $(node -p 'const r = require(process.argv[1])[0]; `${r.vlmbench_version}, MLX ${r.mlx_version}`' "$(realpath "$out/mlx-vlm.json")")"; fi
  echo "tests: pp$p, tg$n; $r repetitions after one warm-up, $rounds alternated rounds, seed $seed"
  echo "gguf: $gguf ($(stat -c %s "$gguf") bytes)"
  echo "vlmbench checkpoint: $model"
} > "$out/machine.txt"

{
  echo "# llama.cpp vs vlmbench$([ "$int8" = 1 ] && echo " (default and int8 activations)")$([ "$mlx_lm" = 1 ] && echo " (and mlx-lm)") on $where: pp$p, tg$n"
  echo
  echo '```'
  cat "$out/machine.txt"
  echo '```'
  echo
  echo "A = llama.cpp (baseline), B = vlmbench. Speedup and B/A above 1: vlmbench faster (for time to first"
  echo "token and peak memory, below 1 is better). A test fills only what it measures: pp the prefill rate,"
  echo "tg the decode rate and the time to first token of its 1-token prompt; 0 and NaN mark the rest."
  if [ -n "$gpu" ]; then
    echo "Peak memory: llama.cpp's is the GPU memory in use after each test (the whole device's), vlmbench's MLX's allocator peak."
  else
    echo "Peak memory: llama.cpp's is its process's resident high-water mark, vlmbench's MLX's allocator peak."
  fi
  if [ "$mlx_lm" = 1 ]; then
    echo "mlx-lm (float32, every floating parameter cast) is timed as vlmbench bench; its peak is MLX's allocator peak."
  fi
  echo
  echo "## All $rounds rounds pooled ($((rounds * r)) repetitions a test)"
  echo
  "$bin" compare "$out/llama.cpp.results.json" "$out/vlmbench.results.json"
  if [ "$int8" = 1 ]; then
    echo
    echo "## llama.cpp (A) vs $int8_label (B), all $rounds rounds pooled ($((rounds * r)) repetitions a test)"
    echo
    "$bin" compare "$out/llama.cpp.results.json" "$out/vlmbench-int8.results.json"
  fi
  if [ "$mlx_lm" = 1 ]; then
    echo
    echo "## mlx-lm (A) vs vlmbench (B), all $rounds rounds pooled ($((rounds * r)) repetitions a test)"
    echo
    "$bin" compare "$out/mlx-lm.results.json" "$out/vlmbench.results.json"
  fi
  if [ "$mlx_vlm" = 1 ]; then
    echo
    echo "## $vlm_label (A) vs vlmbench (B), $rounds rounds (one generation each)"
    echo
    "$bin" compare "$out/mlx-vlm.results.json" "$out/vlmbench.results.json"
  fi
  for k in $(seq 1 "$rounds"); do
    echo
    echo "## Round $k"
    echo
    "$bin" compare "$out/llama.cpp-round$k.results.json" "$out/vlmbench-round$k.results.json"
    if [ "$int8" = 1 ]; then
      echo
      echo "### Round $k: llama.cpp (A) vs $int8_label (B)"
      echo
      "$bin" compare "$out/llama.cpp-round$k.results.json" "$out/vlmbench-int8-round$k.results.json"
    fi
    if [ "$mlx_lm" = 1 ]; then
      echo
      echo "### Round $k: mlx-lm (A) vs vlmbench (B)"
      echo
      "$bin" compare "$out/mlx-lm-round$k.results.json" "$out/vlmbench-round$k.results.json"
    fi
  done
} > "$out/compare.md"
"$bin" chart "${charted[@]}" --out-dir "$out" >&2
sed -n '/^## All/,/^## Round 1/p' "$out/compare.md" | sed '$d'
grep -A1 WARNING "$out/machine.txt" >&2 || true
echo "$out"
