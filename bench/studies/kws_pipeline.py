"""What the whole path from audio to keyword events costs: edgerf beside microWakeWord,
on one long recording, through each tool's command line and inside one process.

    pip install -e ".[rival]"        # pymicro-wakeword: microWakeWord's models and CLI
    python -m edgerf.bench.studies.kws_pipeline [--minutes 20] [--runs 3] [--model kws-gru]

The recording: ``edgerf.data.recordings`` (seed 0, 12 dB SNR, test-split speakers), as raw
16-bit PCM on stdin to both command lines (``edgerf stream MODEL -`` and ``python -m
pymicro_wakeword --model okay_nabu``, whose live mode reads stdin); CPU = user + sys of
the child, median of ``--runs``, and of an empty input (start-up). In one process both
are fed the same 100 ms chunks, as a microphone driver delivers them; edgerf's time is
split by stage (``edgerf.runtime.Spotter``), microWakeWord's into its features and its
model. Writes bench/results/kws_pipeline.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgerf.bench.report import result_file
from edgerf.bench.studies import RESULTS

RIVAL = "okay_nabu"
CHUNK_S = 0.1


def cpu_of(cmd: list[str], stdin: Path) -> float:
    """User + sys seconds of one child process fed ``stdin``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(stdin, "rb") as f:
        r = subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.decode()[-500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def command_lines(model: str, raw: Path, empty: Path, runs: int) -> dict:
    tools = {"edgerf": [sys.executable, "-m", "edgerf", "stream", model, "-"],
             "microWakeWord": [sys.executable, "-m", "pymicro_wakeword", "--model", RIVAL]}
    out = {}
    for name, cmd in tools.items():
        whole = [cpu_of(cmd, raw) for _ in range(runs)]
        start = [cpu_of(cmd, empty) for _ in range(runs)]
        out[name] = {"command": " ".join(["python"] + cmd[1:]) + " < recording.raw", "cpu_s": whole,
                     "median_cpu_s": statistics.median(whole), "startup_cpu_s": statistics.median(start)}
    return out


def in_process(model: str, pcm: np.ndarray, rate: int) -> dict:
    """Both fed the same 100 ms chunks in this process. Each tool's total is the process time
    of a pass with no clock inside it; its split by stage comes from a second pass that reads
    the clock around each stage (its own share of the total, not added to it)."""
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

    from edgerf.models import builtin_artifact
    from edgerf.runtime import Spotter, StepModel
    from edgerf.runtime.audio import pcm16_to_float
    from edgerf.runtime.spotter import steady_heap

    steady_heap()          # as `edgerf stream` does (both tools in this process benefit)

    chunk = int(CHUNK_S * rate)
    seconds = len(pcm) / rate
    pcm16 = np.clip(np.round(pcm * 32768), -32768, 32767).astype("<i2")
    path = builtin_artifact(model) if "." not in model else Path(model)

    def edgerf_pass(timed: bool) -> tuple[float, Spotter, int]:
        spotter = Spotter(StepModel.load(path), timed=timed)
        clock = time.process_time if timed else (lambda: 0.0)
        events, reading = 0, 0.0
        t = time.process_time()
        for k in range(0, len(pcm16), chunk):
            t_read = clock()
            x = pcm16_to_float(pcm16[k:k + chunk])                       # what stdin reading does
            reading += clock() - t_read
            events += len(spotter.feed(x))
        events += len(spotter.flush())
        spotter.seconds["reading"] = reading
        return time.process_time() - t, spotter, events

    def rival_pass(timed: bool) -> tuple[float, float, float, int]:
        mww, feats = MicroWakeWord.from_builtin(Model(RIVAL)), MicroWakeWordFeatures()
        clock = time.process_time if timed else (lambda: 0.0)
        f_s = m_s = 0.0
        detections = 0
        raw = pcm16.tobytes()
        t = time.process_time()
        for k in range(0, len(raw), 2 * chunk):
            t0 = clock()
            fs = list(feats.process_streaming(raw[k:k + 2 * chunk]))
            t1 = clock()
            for f in fs:
                detections += bool(mww.process_streaming(f))
            m_s += clock() - t1
            f_s += t1 - t0
        return time.process_time() - t, f_s, m_s, detections

    edgerf_total, _, events = edgerf_pass(timed=False)
    _, spotter, _ = edgerf_pass(timed=True)
    rival_total, _, _, detections = rival_pass(timed=False)
    _, f_s, m_s, _ = rival_pass(timed=True)
    per_s = lambda v: round(v / seconds * 1e3, 4)          # noqa: E731  ms of CPU per second of audio
    return {"edgerf": {"total_ms_per_s": per_s(edgerf_total),
                       **{f"{k}_ms_per_s": per_s(v) for k, v in spotter.seconds.items()}, "events": events,
                       "model_steps": spotter.model.steps, "graph_probs": spotter.model.graph_probs},
            "microWakeWord": {"total_ms_per_s": per_s(rival_total), "features_ms_per_s": per_s(f_s),
                              "model_ms_per_s": per_s(m_s), "detections": detections}}


def main(argv=None) -> int:
    from edgerf.bench.machine import machine_info
    from edgerf.data.recordings import generate, write
    from edgerf.data.source import locate

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--model", default="kws-gru")
    p.add_argument("--out", default=str(RESULTS / "kws_pipeline"))
    a = p.parse_args(argv)
    try:
        import pymicro_wakeword  # noqa: F401
    except ImportError:
        raise SystemExit('this study needs microWakeWord: pip install -e ".[rival]"') from None
    root = locate("speech-commands").root
    pcm, truth = generate(root, a.minutes * 60, 12.0, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        wav, raw, empty = Path(tmp) / "rec.wav", Path(tmp) / "rec.raw", Path(tmp) / "empty.raw"
        write(wav, pcm, truth)
        raw.write_bytes(np.clip(np.round(pcm * 32768), -32768, 32767).astype("<i2").tobytes())
        empty.write_bytes(b"")
        cli = command_lines(a.model, raw, empty, a.runs)
    # each tool's in-process figures: the run with the median total, of --runs
    passes = [in_process(a.model, pcm, truth["sample_rate"]) for _ in range(a.runs)]
    inproc = {tool: sorted((r[tool] for r in passes), key=lambda v: v["total_ms_per_s"])[len(passes) // 2]
              for tool in passes[0]}
    ratio_cli = cli["edgerf"]["median_cpu_s"] / cli["microWakeWord"]["median_cpu_s"]
    ratio_in = inproc["edgerf"]["total_ms_per_s"] / inproc["microWakeWord"]["total_ms_per_s"]
    # each pass times both tools within seconds of each other: its ratio is immune to the
    # machine's speed drifting between passes (measured: 15% between two runs of this study)
    pass_ratios = sorted(r["edgerf"]["total_ms_per_s"] / r["microWakeWord"]["total_ms_per_s"] for r in passes)
    from edgerf.models import BUILTINS, builtin_artifact
    artifact = builtin_artifact(a.model).name if a.model in BUILTINS else Path(a.model).name
    m = machine_info()
    command = "python -m edgerf.bench.studies.kws_pipeline " + " ".join(argv if argv is not None else sys.argv[1:])
    out = {"command": command.strip(), "machine": m, "recording": {k: truth[k] for k in ("seconds", "snr_db", "seed",
                                                                                         "keywords", "background")},
           "model": a.model, "rival": RIVAL, "command_line": cli, "in_process": inproc,
           "ratio_command_line": ratio_cli, "ratio_in_process": ratio_in, "ratio_in_process_per_pass": pass_ratios}
    result_file(a.out, ".json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    e, w = cli["edgerf"], cli["microWakeWord"]
    ie, iw = inproc["edgerf"], inproc["microWakeWord"]
    # the graph's own softmax output is read with the logits' cost: its time is the model's
    probs_cell = "in the graph (model)" if ie.get("graph_probs") else f"{ie['probs_ms_per_s']:.3f}"
    text = f"""# Audio to keyword events: edgerf beside microWakeWord

Produced by `{out['command']}` on {m['cpu']} ({m['arch']}), one process at a time. The recording:
`python -m edgerf.data.recordings --minutes {a.minutes:g} --snr 12 --seed 0` ({truth['seconds']:.0f} s,
{truth['keywords']} keywords of test-split speakers over {truth['background']['distinct_s']:.0f} s of distinct real
background). edgerf runs `{a.model}` (`{artifact}` on LiteRT, as `edgerf stream` picks it); microWakeWord (`pymicro-wakeword` 2.5.0) runs
`{RIVAL}` with its own C++ front end and TFLite library. CPU is user + sys, median of {a.runs} runs.

## Through the command lines (raw 16-bit PCM on stdin)

| tool | CPU s for the recording | of which start-up (empty input) | ms CPU per s of audio |
|---|---|---|---|
| edgerf | {e['median_cpu_s']:.2f} | {e['startup_cpu_s']:.2f} | {e['median_cpu_s'] / truth['seconds'] * 1e3:.3f} |
| microWakeWord | {w['median_cpu_s']:.2f} | {w['startup_cpu_s']:.2f} | {w['median_cpu_s'] / truth['seconds'] * 1e3:.3f} |

edgerf / microWakeWord: **{ratio_cli:.2f}** (the goal: 1/3 or less).

## In one process, 100 ms chunks (ms of CPU per second of audio; of {a.runs} passes, the median one)

The total is a pass with no clock inside it; the stages are a second pass that reads the clock
around each one.

| tool | total | reading | features | model | probabilities | detection |
|---|---|---|---|---|---|---|
| edgerf | {ie['total_ms_per_s']:.3f} | {ie.get('reading_ms_per_s', 0):.3f} | {ie['features_ms_per_s']:.3f} | {ie['model_ms_per_s']:.3f} | {probs_cell} | {ie['detection_ms_per_s']:.3f} |
| microWakeWord | {iw['total_ms_per_s']:.3f} | | {iw['features_ms_per_s']:.3f} | {iw['model_ms_per_s']:.3f} (with its probabilities and detection) | | |

edgerf / microWakeWord: **{ratio_in:.3f}** (the goal: 1/3 or less); pass by pass (both tools
timed within seconds of each other) median {statistics.median(pass_ratios):.3f}, range
[{pass_ratios[0]:.3f}, {pass_ratios[-1]:.3f}]. edgerf stepped its model {ie['model_steps']:,} times
({ie['model_steps'] / truth['seconds']:.0f} per second of audio) and reported {ie['events']} events.
"""
    result_file(a.out, ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
