"""Training memory against dataset size: bench/results/data_scale.{md,json}.

    python -m edgerf.bench.studies.data_scale [--factors 1,4,16] [--ranks 1,2] [--piece 64] [--workers 1]

The speech folder replicated ``factor`` times under new speaker names (symbolic links: each
replica is other speakers to the speaker split, so every split grows ``factor`` times), one
epoch of ``edgerf train --task gsc``
per factor, in one process and under ``torchrun`` with 2 ranks, with piecewise lanes
(``--lane-piece``, ``--workers``) and, at 1x, the whole-epoch lanes of earlier versions.
Peak anonymous resident memory is sampled every 0.1 s from /proc (Pss_Anon, summed over the
run's whole process tree: launcher, ranks and workers; memory-mapped cache pages are file
pages, not counted); steps/s and the share of time the loop waited for data come from the
checkpoint's history. The audio cache is built before the timed runs (its build is timed
apart).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgerf.bench.report import markdown_table, merge_rows, result_file
from edgerf.bench.rss import process_tree
from edgerf.bench.studies import RESULTS

COLUMNS = ["factor", "clips", "ranks", "lanes", "peak_anon_mib", "vs_1x", "steps_per_s", "data_wait",
           "wait_after_fill", "epoch_s", "wall_s", "run", "note"]
TRAIN = ["--task", "gsc", "--model", "gru", "--loss", "reset-free", "--epochs", "1", "--val-samples", "200",
         "--test-steps", "10000", "--background-hours", "0.01", "-q"]


def replicate(src: Path, dst: Path, factor: int) -> int:
    """``src`` linked ``factor`` times into ``dst``, replica r's speakers renamed ``<speaker>r<r>``."""
    n = 0
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / d.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(d.glob("*.wav*")):
            for r in range(factor if d.name != "_silence_" else 1):
                name = f.name.replace("_nohash_", f"r{r}_nohash_") if r else f.name
                (dst / d.name / name).symlink_to(f.resolve())
                n += d.name != "_silence_"
    return n


def _anon_kib(pid: int) -> int:
    """The process's proportional share of anonymous memory (Pss_Anon): pages a forked worker
    still shares with its parent count once over the two, not twice as RssAnon would."""
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss_Anon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(cmd: list[str], env: dict) -> tuple[float, float]:
    """Run ``cmd``; (peak summed RssAnon MiB over its process tree, wall seconds)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], sum(_anon_kib(q) for q in process_tree(p.pid)))
            time.sleep(0.1)
    t0 = time.perf_counter()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = p.communicate()
    done.set()
    th.join()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return peak[0] / 1024, time.perf_counter() - t0


def main(argv=None) -> int:
    from edgerf import checkpoint
    from edgerf.bench.machine import machine_info
    from edgerf.data.source import locate

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factors", default="1,4,16")
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--piece", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "data_scale"))
    p.add_argument("--merge", action="store_true",
                   help="keep the previous results' rows of the factors not run now (a partial re-run)")
    p.add_argument("--note", help="a note on every row of this run (e.g. what else the machine was doing)")
    a = p.parse_args(argv)
    src = locate("speech-commands").root
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "EDGERF_CACHE": str(Path(tmp) / "cache"), "OMP_NUM_THREADS": "1"}
        for factor in map(int, a.factors.split(",")):
            data = Path(tmp) / f"x{factor}" / src.name
            clips = replicate(src, data, factor)
            warm = [sys.executable, "-c", "import sys; from edgerf.tasks import get_task; "
                    "t = get_task('gsc').bind(sys.argv[1]).resolve(); [t.split_arrays(s) for s in "
                    "('train', 'val', 'test')]", str(data)]
            cache_mib, cache_s = run(warm, env)
            variants = [(r, "pieces") for r in map(int, a.ranks.split(","))]
            if factor == 1:
                variants.insert(0, (1, "whole epoch"))
            for ranks, lanes in variants:
                out = Path(tmp) / f"x{factor}-{ranks}-{lanes.replace(' ', '')}.pt"
                args = ["train", "--data", str(data), "-o", str(out), *TRAIN]
                if lanes == "pieces":
                    args += ["--lane-piece", str(a.piece), "--workers", str(a.workers)]
                launcher = ["torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
                            str(29600 + os.getpid() % 500), "-m"] if ranks > 1 else []
                cmd = [sys.executable, "-m", *launcher, "edgerf", *args]
                peak, wall = run(cmd, env)
                h = checkpoint.load(out).training["history"][0]
                rows.append({"factor": factor, "clips": clips, "ranks": ranks, "lanes": lanes,
                             "peak_anon_mib": round(peak), "steps_per_s": round(h["lane_steps"] / h["seconds"]),
                             "data_wait": h.get("data_wait"),
                             "wait_after_fill": h.get("data_wait_after_start"), "epoch_s": round(h["seconds"], 1),
                             "wall_s": round(wall, 1), "cache_build_s": round(cache_s, 1),
                             **({"note": a.note} if a.note else {})})
                print(rows[-1], flush=True)
        cache_bytes = sum(f.stat().st_size for f in (Path(tmp) / "cache").rglob("audio.bin"))
    m = machine_info()
    command = ("python -m edgerf.bench.studies.data_scale " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    out = Path(a.out)
    commands = [command]
    if a.merge and result_file(out, ".json").exists():
        old = json.loads(result_file(out, ".json").read_text())
        commands = old.get("commands", [old["command"]]) + commands
        for r in old["rows"]:
            r.setdefault("run", 1)
        for r in rows:
            r["run"] = len(commands)
        rows = merge_rows(old["rows"], rows, key=lambda r: r["factor"])
        cache_bytes = max(cache_bytes, old.get("cache_bytes", 0))
    base = {r["ranks"]: r["peak_anon_mib"] for r in rows if r["factor"] == 1 and r["lanes"] == "pieces"}
    for r in rows:
        r["vs_1x"] = round(r["peak_anon_mib"] / base[r["ranks"]], 2) if r["lanes"] == "pieces" and r["ranks"] in base \
            else None
    result_file(out, ".json").write_text(json.dumps({"command": command, "commands": commands, "machine": m,
                                                    "rows": rows, "cache_bytes": cache_bytes}, indent=1) + "\n")
    runs = " ".join(f"run {k + 1}: `{c}`;" for k, c in enumerate(commands)) if len(commands) > 1 else f"`{command}`"
    text = (f"# Training memory against dataset size\n\nProduced by {runs} on {m['cpu']} ({m['arch']}, "
            f"{m['cores']} cores). One epoch of `edgerf train {' '.join(TRAIN)}` on the speech folder replicated "
            "`factor` times under new speaker names; `lanes`: piecewise (`--lane-piece "
            f"{a.piece} --workers {a.workers}`) or whole-epoch (earlier versions' default). `peak_anon_mib`: peak "
            "anonymous resident memory (proportional: Pss_Anon) summed over every process of the run (launcher, ranks, workers), sampled "
            "every 0.1 s; the decoded-audio cache is memory-mapped file pages, not counted, and was built before "
            "(`cache_build_s`). `data_wait`: share of the epoch the training loop waited for pieces; `wait_after_fill`: the same without the wait for every lane's first piece before the first step (once per run, not per epoch). `epoch_s`: the "
            "training loop's epoch (the whole-epoch path builds its lanes before it starts: outside `epoch_s`, "
            "inside `wall_s`, the whole run from start-up to the checkpoint written). The caches "
            f"of every factor took {cache_bytes / 1e6:.0f} MB on disk.\n\n" + markdown_table(rows, COLUMNS) + "\n")
    result_file(out, ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
