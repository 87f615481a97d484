"""The GPU check's summary: every phase's status and time, and the figures the phases wrote.

usage: python3 summarize.py WORK_DIR SUMMARY_JSON TOTAL_SECONDS   (bench/gpu/check.sh runs it)
Prints a short table last (the device tool returns the end of the output).
"""
import json, os, re, sys

work, summary_file, total = sys.argv[1], sys.argv[2], int(sys.argv[3])


def read_json(name):
    try:
        with open(os.path.join(work, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


phases = [json.loads(line) for line in open(os.path.join(work, "phases.jsonl")) if line.strip()]
figures = {}
for name in ("env", "cuda-check", "kernels", "static-step", "graphs", "pretrain-128", "hf-anchor"):
    value = read_json(name + ".json")
    if value is not None:
        figures[name] = value

bench = []
for name in ("bench-128", "bench-512", "compile-128", "bench-256x128", "encode-128"):
    report = read_json(name + ".json")
    if not report:
        continue
    peak = report.get("matmulPeakFlops")
    torch_ms = {(r["model"], r["head"], r["seq"], r.get("compiled", False)): r["msPerStep"]["median"] for r in report.get("pytorch", [])}
    for r in report["results"]:
        tokens = r["batch"] * r["seq"]
        mode = (report.get("options") or {}).get("mode", "train")
        row = dict(phase=name, mode=mode, batch=r["batch"], seq=r["seq"], matmul_peak_tflops=peak / 1e12 if peak else None)
        for model in ("roformer", "baseline"):
            m = r[model]
            # MFU against the measured peak, and against the H100/H200 dense bf16 figure the issue uses.
            row[model] = dict(ms_per_step=m["msPerStep"]["median"], tokens_per_s=m["tokensPerSecond"], mfu=m["mfu"],
                              mfu_of_989=m["flopsPerToken"] * m["tokensPerSecond"] / 989e12, graph_replays=m.get("graphReplays"))
        for key, ms in torch_ms.items():
            if key[2] == r["seq"]:
                name = f"pytorch {key[0]} head={key[1]}" + (" torch.compile" if key[3] else "")
                row[name] = dict(ms_per_step=ms, tokens_per_s=tokens / ms * 1e3)
        row["roformer_over_baseline"] = row["baseline"]["ms_per_step"] / row["roformer"]["ms_per_step"]
        bench.append(row)
if bench:
    figures["bench"] = bench

try:
    figures["kernel-ops"] = dict(report=open(os.path.join(work, "kernel-ops.txt")).read())
except OSError:
    pass
# roformer-bench --count-ops: each model's ops per eager step, by phase.
ops = read_json("op-count.json")
if ops:
    figures["op-count"] = [dict(model=c["model"], seq=c["seq"], batch=c["batch"], total=c["total"], by_phase=c["byPhase"],
                                top=c["ops"][:25]) for c in ops.get("counts", [])]
for name in ("kernel-count", "kernel-count-unfused"):
    try:
        text = open(os.path.join(work, name + ".txt")).read()
    except OSError:
        continue
    m = re.search(r"kernels per step (\d+), GPU time per step ([\d.]+) ms", text)
    figures[name] = dict(kernels_per_step=int(m.group(1)), gpu_ms_per_step=float(m.group(2)), report=text) if m else dict(report=text)

# The headline ratio: our RoFormerV2 step over the Hugging Face RoBERTa step under
# torch.compile at the anchor's shape (64 × 128).
anchor = {r["impl"]: r for r in (figures.get("hf-anchor") or {}).get("runs", [])}
ours = next((row for row in bench if row["batch"] == 64 and row["seq"] == 128 and row["mode"] == "train"), None)
if ours and "hf-roberta-compile" in anchor:
    figures["roformer_over_hf_compile"] = ours["roformer"]["tokens_per_s"] / anchor["hf-roberta-compile"]["tokens_per_s"]

# The other headline: our RoFormerV2 step over the same model in PyTorch under torch.compile.
compiled = next((row for row in bench if "pytorch roformer-v2 head=targets torch.compile" in row), None)
if compiled:
    figures["roformer_over_torch_compile"] = compiled["pytorch roformer-v2 head=targets torch.compile"]["ms_per_step"] / compiled["roformer"]["ms_per_step"]

summary = dict(total_seconds=total, phases=phases, figures=figures)
with open(summary_file, "w") as f:
    json.dump(summary, f, indent=1)

print(f"\n===== GPU check: {total} s")
for p in phases:
    print(f"  {p['phase']:13s} {p['status']:8s} {p['seconds']:4d} s  {p['reason'][:90]}")
for row in bench:
    r = row["roformer"]
    replays = "" if r.get("graph_replays") is None else f", {r['graph_replays']} graph replays"
    print(f"  {row['phase']:13s} {row['mode']:6s} {row['batch']:3d} x {row['seq']:3d}: RoFormerV2 {r['tokens_per_s']:9.0f} tok/s, "
          f"MFU {100 * r['mfu']:.1f}% ({100 * r['mfu_of_989']:.1f}% of 989), {row['roformer_over_baseline']:.2f}x the baseline{replays}")
graphs = figures.get("graphs") or {}
for run in graphs.get("runs", []):
    print(f"  graphs {run['batch']} x {run['seq']} {run.get('precision', '')}: {run.get('speedup', 0):.2f}x eager, updates apart "
          f"{run.get('relativeUpdateDifference', float('nan')):.2e} (noise floor {run.get('noiseFloor', float('nan')):.2e})")
pretrain_speed = figures.get("pretrain-128") or {}
if pretrain_speed.get("tokensPerSecond"):
    ratio = pretrain_speed.get("ratio")
    print(f"  roformer pretrain --device cuda 64 x 128: {pretrain_speed['tokensPerSecond']:9.0f} tok/s"
          + (f", {ratio:.2f}x roformer-bench's" if ratio else ""))
for name, words in (("kernel-count", "fused"), ("kernel-count-unfused", "ROFORMER_FUSED=0")):
    k = figures.get(name, {})
    if "kernels_per_step" in k:
        print(f"  kernels per step ({words}) {k['kernels_per_step']}, GPU time {k['gpu_ms_per_step']} ms")
for c in figures.get("op-count", []):
    print(f"  libtorch ops per eager step, {c['model']} {c['batch']} x {c['seq']}: {c['total']} "
          f"({', '.join(f'{k} {v}' for k, v in c['by_phase'].items())})")
for run in (figures.get("hf-anchor") or {}).get("runs", []):
    print(f"  {run['impl']:20s} {run['tokens_per_s']:9.0f} tok/s, MFU {100 * run['mfu']:.1f}%")
if "roformer_over_hf_compile" in figures:
    print(f"  RoFormerV2 64 x 128 / HF RoBERTa under torch.compile: {figures['roformer_over_hf_compile']:.2f}x")
if "roformer_over_torch_compile" in figures:
    print(f"  RoFormerV2 64 x 128 / the same model in PyTorch under torch.compile: {figures['roformer_over_torch_compile']:.2f}x")
print(f"  summary: {summary_file}")
