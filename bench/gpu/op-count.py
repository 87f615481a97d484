"""Kernels and GPU time per training step by the libtorch op that launched them.

bench/gpu/kernel-count.sh runs the step program twice (2 and 4 steps) under
    ROFORMER_NVTX_OPS=1 ncu --nvtx --print-nvtx-rename kernel --metrics gpu__time_duration.sum --csv ...
so that each kernel carries the name of its innermost NVTX range: the op (libtorch's NVTX mode
names ranges "aten::add_, seq = 123" and the like). The kernels of the two extra steps are grouped
by op, the sequence numbers and shapes dropped; the largest groups are printed.

usage: python3 op-count.py ncu2.csv ncu4.csv [--top N]
"""
import collections
import csv
import re
import sys


def load(path):
    rows = [r for r in csv.DictReader(line for line in open(path) if line.startswith('"'))
            if r.get("Metric Name") == "gpu__time_duration.sum"]
    return [(r["Kernel Name"], float(r["Metric Value"].replace(",", ""))) for r in rows]  # ns


def op_of(name):
    """'aten::add_, seq = 12, sizes = [...]' -> 'aten::add_'; kernel names outside any range stay, shortened."""
    name = re.split(r",\s*(seq|sizes|op_id)\s*=", name)[0].strip()
    return name[:90]


def main(argv):
    top = 30
    if "--top" in argv:
        i = argv.index("--top")
        top = int(argv[i + 1])
        del argv[i:i + 2]
    short, long_ = load(argv[1]), load(argv[2])
    extra = long_[len(short):]
    steps = 2
    count, time = collections.Counter(), collections.Counter()
    for name, t in extra:
        count[op_of(name)] += 1
        time[op_of(name)] += t
    print(f"kernels per step {len(extra) / steps:.0f}, GPU time per step {sum(t for _, t in extra) / steps / 1e6:.2f} ms, "
          f"{len(count)} ops (or kernels outside any op)")
    print(f"  {'ms/step':>8} {'kernels':>8}  op")
    for name, t in time.most_common(top):
        print(f"  {t / steps / 1e6:8.3f} {count[name] / steps:8.1f}  {name}")


if __name__ == "__main__":
    main(sys.argv)
