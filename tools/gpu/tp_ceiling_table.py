"""The table of tools/gpu/tp-ceiling.sh: each rank shape's prefill and decode rate over the whole
model's, from its `ceiling-N-roundR.json` bench files (N = 1 is the whole model). Rates and graph
building time are means over every round and repetition; peak memory is the largest of them.
    python3 tp_ceiling_table.py DIR ROUNDS RANKS...
"""
import json, sys, statistics
out, rounds, ranks = sys.argv[1], int(sys.argv[2]), ["1"] + sys.argv[3:]
def rows(n, test):
    return [row for r in range(1, rounds + 1)
            for row in json.load(open(f"{out}/ceiling-{n}-round{r}.json")) if row["test"] == test]
def rate(n, test):
    return statistics.mean(x for row in rows(n, test) for x in row["tps_samples"])
base = {t: rate("1", t) for t in ("pp512", "tg128")}
print("| shapes | weights GB | pp512 t/s | tg128 t/s | pp512 / whole | tg128 / whole | ms/token | graph building ms | peak GB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in ranks:
    pp, tg, every = rate(n, "pp512"), rate(n, "tg128"), rows(n, "pp512") + rows(n, "tg128")
    builds = [r["decode_host_ms"]["build"] for r in rows(n, "tg128") if r.get("decode_host_ms")]
    build = f"{statistics.mean(builds):.2f}" if builds else "-"
    peak = max(r["peak_memory_bytes"] for r in every)
    name = "whole model" if n == "1" else f"one of {n} ranks"
    print(f"| {name} | {every[0]['model_size_bytes']/1e9:.2f} | {pp:.1f} | {tg:.2f} | {pp/base['pp512']:.2f}x | "
          f"{tg/base['tg128']:.2f}x | {1000/tg:.2f} | {build} | {peak/1e9:.2f} |")
row = every[0]
print(f"\n{row['device']}, {row['backend']}, mlx {row['mlx_version']}; means over {rounds} alternated rounds x 2 repetitions")
