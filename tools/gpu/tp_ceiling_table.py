"""The table of tools/gpu/tp-ceiling.sh: each rank shape's prefill and decode rate over the whole
model's, from its `ceiling-N-roundR.json` bench files (N = 1 is the whole model).
    python3 tp_ceiling_table.py DIR ROUNDS RANKS...
"""
import json, sys, statistics
out, rounds, ranks = sys.argv[1], int(sys.argv[2]), ["1"] + sys.argv[3:]
def rate(n, test):
    rows = [row for r in range(1, rounds + 1)
            for row in json.load(open(f"{out}/ceiling-{n}-round{r}.json")) if row["test"] == test]
    return statistics.mean(x for row in rows for x in row["tps_samples"]), rows[0]
base = {t: rate("1", t)[0] for t in ("pp512", "tg128")}
print("| shapes | weights GB | pp512 t/s | tg128 t/s | pp512 / whole | tg128 / whole | ms/token | graph building ms | peak GB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in ranks:
    pp, row = rate(n, "pp512"); tg, tg_row = rate(n, "tg128")
    build = (tg_row.get("decode_host_ms") or {}).get("build")
    build = "-" if build is None else f"{build:.2f}"
    name = "whole model" if n == "1" else f"one of {n} ranks"
    print(f"| {name} | {row['model_size_bytes']/1e9:.2f} | {pp:.1f} | {tg:.2f} | {pp/base['pp512']:.2f}x | "
          f"{tg/base['tg128']:.2f}x | {1000/tg:.2f} | {build} | {row['peak_memory_bytes']/1e9:.2f} |")
print(f"\n{row['device']}, {row['backend']}, mlx {row['mlx_version']}; means over {rounds} alternated rounds x 2 repetitions")
