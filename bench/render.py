"""Bench reports: terminal table, Markdown, JSON and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgerf.runtime.atomic import atomic_path, write_text
from edgerf.runtime.errors import EdgerfError
from edgerf.data.source import describe


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def table(rep: dict) -> str:
    w = max([12] + [len(r["target"]) for r in rep["targets"]])
    hdr = (f"{'target':{w}s} {'precision':9s} {'median us':>9s} {'p99 us':>8s} {'x torch':>7s} {'steps/s':>8s} "
           f"{'RSS MiB':>7s} {'size KiB':>8s} {'acc_p':>6s} {'acc_f':>6s} {'f.alarm':>7s} {'agree':>6s}")
    lines = [hdr, "-" * len(hdr)]
    for r in rep["targets"]:
        o, acc = r["latency"]["overall"], r.get("accuracy", {})
        lines.append(
            f"{r['target']:{w}s} {r['precision']:9s} {o['median_us']:9.1f} {o['p99_us']:8.1f} "
            f"{_f(r.get('vs_torch', {}).get('median'), '7.2f')} {r['steps_per_s']:8.0f} "
            f"{_f(r.get('peak_rss_mib'), '7.1f')} {r['size_bytes'] / 1024:8.1f} "
            f"{_f(acc.get('acc_p'), '6.4f')} {_f(acc.get('acc_f'), '6.4f')} {_f(acc.get('false_alarm'), '7.4f')} "
            f"{_f(acc.get('argmax_agreement'), '6.4f')}")
    for r in rep["targets"]:
        kw = r.get("accuracy", {}).get("keywords")
        if kw:
            lines.append(f"{r['target']:12s} keywords: {kw['hits']} hits, {kw['misses']} misses "
                         f"({kw['miss_rate']:.1%}), {kw['false_accepts']} false accepts in {kw['hours'] * 60:.1f} min "
                         f"({kw['fa_per_hour']:.1f}/h of a stream that is mostly speech)"
                         + (f"; detection latency from the end of the word {kw['latency_ms']['median']:.0f} ms median, "
                            f"{kw['latency_ms']['p90']:.0f} ms p90 (printed at {kw['reported_latency_ms']['median']:.0f} "
                            "ms median)" if kw.get("latency_ms", {}).get("n") else ""))
    for r in rep["targets"]:
        if "vs_x86" in r:
            v = r["vs_x86"]
            lines.append(f"{r['target']:12s} vs the x86 run: argmax agreement {v['argmax_agreement_all']:.4%}, "
                         f"max |d logits| {v['max_abs_logits_diff']:.3g}, bit-identical {v['bit_identical']}")
    m = rep["machine"]
    lines.append(f"{rep['device']}{' (EMULATED: timings are not real)' if rep.get('emulated') else ''}: "
                 f"{m['cpu']}, {m['cores']} cores, {rep['config']['threads']} thread(s); reference: {rep['reference']}")
    if rep.get("frame_period_s"):
        lines.append(f"real-time factor = median step time / frame period ({rep['frame_period_s']} s)")
    if any(r.get("timing", "").startswith("host-emulated") for r in rep["targets"]):
        lines.append("@tflm and @numpy timings are host-emulated: TFLite Micro's kernels and edgerf's numpy executor "
                     "on this host, not the microcontroller or board they stand for")
    lines += _unverified(rep)
    lines += [f"not run: {r['target']} ({r['file']}): {r['why']}" for r in rep.get("skipped", [])]
    return "\n".join(lines)


def _unverified(rep: dict) -> list[str]:
    """A line per artifact run without a sealed manifest (--allow-unverified): never silent."""
    return [f"UNVERIFIED: {r['file']} ran without a sealed manifest; nothing proves what it computes"
            for r in rep["targets"] if str(r.get("integrity") or "").startswith("UNVERIFIED")]


def markdown(rep: dict, plots: bool = True) -> str:
    m = rep["machine"]
    out = [f"# edgerf bench: {rep['model']['family']}-{rep['model']['hidden']} on {rep['task']}", "",
           f"- device: `{rep['device']}`{' (emulated: timings not comparable)' if rep.get('emulated') else ''}; "
           f"CPU: {m['cpu']} ({m['arch']}, {m['cores']} cores, ISA flags: {' '.join(m['isa_flags']) or 'n/a'})",
           f"- threads: {rep['config']['threads']}; latency: {rep['config']['windows']} windows x "
           f"{rep['config']['seconds']} s after {rep['config']['warmup_s']} s warm-up, every step timed, "
           "state fed back",
           f"- accuracy: one unreset stream of {rep['accuracy_steps']:,} steps; reference: {rep['reference']}",
           f"- data: {describe(rep.get('data'))}",
           f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
           *(f"- **{line}**" for line in _unverified(rep)),
           *(f"- not run: `{r['target']}` ({r['file']}): {r['why']}" for r in rep.get("skipped", [])),
           *(["- `@tflm` and `@numpy` rows: TFLite Micro's kernels and edgerf's numpy executor on this host; "
              "their timings are host-emulated, not the device's"] if any(r.get("timing", "").startswith("host-emulated") for r in rep["targets"])
             else []), "",
           "| target | precision | median us | p90 us | p99 us | max us | x torch (median) | x torch (p99) | steps/s "
           "| RTF | peak RSS MiB | size KiB |", "|" + "---|" * 12]
    for r in rep["targets"]:
        o = r["latency"]["overall"]
        vt = r.get("vs_torch", {})
        out.append(f"| {r['target']} | {r['precision']} | {o['median_us']:.1f} | {o['p90_us']:.1f} | {o['p99_us']:.1f} "
                   f"| {o['max_us']:.0f} | {_f(vt.get('median'), '.2f')} | {_f(vt.get('p99'), '.2f')} "
                   f"| {r['steps_per_s']:.0f} | {_f(r.get('real_time_factor'), '.2e')} "
                   f"| {_f(r.get('peak_rss_mib'), '.1f')} | {r['size_bytes'] / 1024:.1f} |")
    if any("accuracy" in r for r in rep["targets"]):
        out += ["", "| target | acc_p | acc_f | false_alarm | noise_conf | acc_p first 10% | acc_p last 10% "
                "| argmax agreement | max abs logit drift |", "|" + "---|" * 9]
        for r in rep["targets"]:
            a = r.get("accuracy")
            if a:
                out.append(f"| {r['target']} | {a['acc_p']:.4f} | {a['acc_f']:.4f} | {a['false_alarm']:.5f} "
                           f"| {a['noise_conf']:.3f} | {a['acc_p_first10']:.4f} | {a['acc_p_last10']:.4f} "
                           f"| {a['argmax_agreement']:.4%} | {a['max_abs_logits_drift']:.3g} |")
    if any("vs_x86" in r for r in rep["targets"]):
        out += ["", "Step-for-step against the x86 run of the same artifacts on the same stream:", "",
                "| target | argmax agreement (all steps) | max abs logit diff | bit-identical |", "|---|---|---|---|"]
        for r in rep["targets"]:
            v = r["vs_x86"]
            out.append(f"| {r['target']} | {v['argmax_agreement_all']:.4%} | {v['max_abs_logits_diff']:.3g} "
                       f"| {v['bit_identical']} |")
    out += ["", "Per-window latency (median / p99 us)"
            + (" - EMULATED, not device time" if rep.get("emulated") else "") + ":", ""]
    for r in rep["targets"]:
        ws = ", ".join(f"{w['median_us']:.1f}/{w['p99_us']:.1f}" for w in r["latency"]["windows"])
        out.append(f"- {r['target']}: {ws}")
    if rep.get("levels"):
        from edgerf.bench.levels import COLUMNS
        from edgerf.bench.report import markdown_table
        out += ["", "At other speech levels (`gain`: every word scaled, gaps as recorded) and SNRs (`snr`: every "
                "word over a real background bed), events at the operating point:", "",
                markdown_table(rep["levels"], COLUMNS)]
    if plots:
        out += ["", "Plots: `latency.png`, `accuracy_along_stream.png`, `stream_excerpt.png`"
                + (", `levels.png`." if rep.get("levels") else "."), ""]
    return "\n".join(out)


def write_report(run, out_dir: Path) -> list[Path]:
    """bench.json, bench.md and (with matplotlib, for a run on this machine) the PNG plots
    of a ``BenchRun``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = bool(run.targets)
    try:
        import matplotlib  # noqa: F401  (host extra; a device with the runtime extra has none)
    except ImportError:
        drawn = False
    write_text(out_dir / "bench.json", json.dumps(run.report, indent=2, default=float))
    write_text(out_dir / "bench.md", markdown(run.report, plots=drawn))
    files = [out_dir / "bench.json", out_dir / "bench.md"]
    if drawn:
        files += plots(run.report, run.targets, run.stream, out_dir)
        if run.report.get("levels"):
            from edgerf.bench.levels import plot as plot_levels
            files.append(plot_levels(run.report["levels"], out_dir / "levels.png"))
    return files


def plots(rep: dict, targets, stream, out_dir: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(8, 4))
    samples = {t.name: t.result["latency"].samples_ns / 1e3 for t in targets}
    lo = min(us.min() for us in samples.values())
    hi = max(np.percentile(us, 99.5) for us in samples.values())
    bins = np.logspace(np.log10(max(lo, 0.1)), np.log10(hi), 120)   # log scale: backends differ 10x
    for t in targets:
        us = samples[t.name]
        ax.hist(us[us <= hi], bins=bins, histtype="step", label=f"{t.name} ({t.precision})", density=True)
    ax.set_xscale("log")
    ax.set_xlabel("per-step latency (us, log scale), up to the largest p99.5")
    ax.set_ylabel("density")
    ax.set_title(f"per-step latency, {rep['device']}{' (emulated)' if rep.get('emulated') else ''}")
    ax.legend()
    files.append(_save(fig, out_dir / "latency.png"))

    if stream is not None and any("logits" in t.result for t in targets):
        fig, ax = plt.subplots(figsize=(8, 4))
        n = len(stream.ends)
        win = max(1, min(n, max(10, n // 10)))      # a short stream: a window of every sample it has
        for t in targets:
            pred = t.result["logits"].argmax(-1)[stream.ends]
            ok = (pred == stream.labels[stream.ends]).astype(float)
            roll = np.convolve(ok, np.ones(win) / win, mode="valid")
            ax.plot(stream.ends[win - 1:], roll, label=t.name)
        ax.set_xlabel("step in the unreset stream")
        ax.set_ylabel(f"acc_p, rolling over {win} samples")
        ax.set_ylim(0, 1)
        ax.set_title("accuracy along the stream (never reset)")
        ax.legend()
        files.append(_save(fig, out_dir / "accuracy_along_stream.png"))

        shown = [t for t in targets if "logits" in t.result]
        ref = next((t for t in shown if t.precision != "fp32"), shown[0])
        files.append(plot_stream_excerpt(stream, ref.result["logits"], f"{ref.name} ({ref.precision})",
                                         out_dir / "stream_excerpt.png", rep["threshold"]))
    return files


def plot_stream_excerpt(stream, logits: np.ndarray, who: str, path: Path, threshold: float = 0.9,
                        steps: int = 300, start: int = 0) -> Path:
    """Input frames, the mask, and the per-step top probability coloured correct/wrong
    on informative steps (the shape of Figure 4 in Yin & Corradi 2024)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sl = slice(start, min(start + steps, len(stream)))
    lg = logits[sl]
    p = np.exp(lg - lg.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    pred, top = p.argmax(-1), p.max(-1)
    m, lab = stream.mask[sl], stream.labels[sl]
    t = np.arange(sl.start, sl.stop)
    correct = m & (pred == lab)
    fig, axes = plt.subplots(3, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 0.5, 2]})
    axes[0].imshow(stream.x[sl].T, aspect="auto", cmap="magma", interpolation="nearest", origin="lower",
                   extent=(sl.start - 0.5, sl.stop - 0.5, -0.5, stream.x.shape[1] - 0.5))
    axes[0].set_ylabel("input feature")
    axes[1].imshow(m[None].astype(float), aspect="auto", cmap="Greens", vmin=0, vmax=1,
                   extent=(sl.start - 0.5, sl.stop - 0.5, 0, 1))
    axes[1].set_yticks([])
    axes[1].set_ylabel("mask")
    axes[2].plot(t, top, color="0.6", lw=0.8, label="top probability")
    axes[2].scatter(t[correct], top[correct], s=6, color="tab:green", label="correct (informative)")
    axes[2].scatter(t[m & ~correct], top[m & ~correct], s=6, color="tab:red", label="wrong (informative)")
    axes[2].axhline(threshold, ls="--", color="k", lw=0.6)
    axes[2].set_ylim(0, 1.02)
    axes[2].set_xlabel("step (never reset)")
    axes[2].set_ylabel(who)
    axes[2].legend(loc="lower right", fontsize=7)
    fig.suptitle("stream excerpt: input, mask, per-step prediction")
    return _save(fig, path)


class StreamTail:
    """The last ``steps`` steps of a stream's frames and probabilities, and the events that end
    in them, for ``edgerf stream --plot``: a live stream runs for days, and keeping every step
    (then every event) grew without end. Called with each chunk (``Spotter``'s ``keep``);
    ``event`` takes each event as printed; ``first`` is the step the tail starts at."""

    def __init__(self, steps: int):
        import collections
        self.steps, self.parts, self.rows, self.first = steps, collections.deque(), 0, 0
        self.events = collections.deque()

    def event(self, record: dict) -> None:
        self.events.append(record)
        while self.events and self.events[0]["end"] < self.first:
            self.events.popleft()

    def __call__(self, frames: np.ndarray, probs: np.ndarray) -> None:
        self.parts.append((np.array(frames, np.float32).reshape(len(probs), -1), np.array(probs)))
        self.rows += len(probs)
        while self.rows - len(self.parts[0][1]) >= self.steps:
            dropped = len(self.parts.popleft()[1])
            self.rows, self.first = self.rows - dropped, self.first + dropped

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([f for f, _ in self.parts]), np.concatenate([p for _, p in self.parts])


def plot_detections(frames: np.ndarray, probs: np.ndarray, events: list[dict], classes: list[str], path: Path,
                    threshold: float, period_s: float | None = None, truth: list[dict] | None = None,
                    first_step: int = 0) -> Path:
    """What ``edgerf stream`` heard: input frames, each class's probability over time (never
    reset), the detected events and, when known, where the words really are. ``frames`` and
    ``probs`` start at step ``first_step`` of the stream (the last part of a long one)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = period_s or 1.0
    T = len(frames)
    t0, t1 = first_step * k, (first_step + T) * k
    events = [ev for ev in events if ev["end"] >= first_step]
    truth = [w for w in truth or [] if w["end_s"] >= t0]
    fig, axes = plt.subplots(2, 1, figsize=(13, 5.5), sharex=True, gridspec_kw={"height_ratios": [2, 2]})
    axes[0].imshow(frames.T, aspect="auto", cmap="magma", interpolation="nearest", origin="lower",
                   extent=(t0, t1, -0.5, frames.shape[1] - 0.5))
    axes[0].set_ylabel("input feature")
    for w in truth or []:
        axes[0].axvspan(w["start_s"], w["end_s"], color="w", alpha=0.12)
        axes[0].text(w["start_s"], frames.shape[1] - 1, w["word"], color="w", fontsize=8, va="top")
    t = (first_step + np.arange(T)) * k
    cmap = plt.get_cmap("tab20")
    for c, name in enumerate(classes):
        axes[1].plot(t, probs[:, c], lw=0.8, color=cmap(c % 20), label=name.strip("_"))  # "_x" hides a legend entry
    for ev in events:
        axes[1].axvspan(ev["start"] * k, (ev["end"] + 1) * k, color=cmap(ev["label"] % 20), alpha=0.25)
        axes[1].text(ev["start"] * k, 1.03, ev["name"], fontsize=8, color=cmap(ev["label"] % 20))
    axes[1].axhline(threshold, ls="--", color="k", lw=0.6)
    axes[1].set_ylim(0, 1.1)
    axes[1].set_xlim(t0, t1)
    axes[1].set_ylabel("class probability")
    axes[1].set_xlabel("time (s), state never reset" if period_s else "step, state never reset")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    found = f"{len(events)} events" + (f", {len(truth)} words spoken" if truth else "")
    part = f", the last {T:,} steps from step {first_step:,}" if first_step else ""
    fig.suptitle(f"stream: input and per-step class probabilities ({found}{part})")
    return _save(fig, path)


def plot_det(curves: dict[str, list[dict]], path: Path) -> Path:
    """DET curves: miss rate against false accepts per hour, one line per model; the
    dashed line marks 1 false accept per hour."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, rows in curves.items():
        fa = np.array([max(r["fa_per_hour"], 0.05) for r in rows])    # log axis: 0 drawn at 0.05
        ax.plot(fa, [r["miss_rate"] for r in rows], marker=".", lw=1, label=name)
    ax.axvline(1.0, ls="--", color="k", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("false accepts per hour (background only; 0 drawn at 0.05)")
    ax.set_ylabel("miss rate (test stream)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("keyword spotting: DET over decision thresholds 0.5-0.99")
    return _save(fig, path)


PLOT_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")


def plot_format(path: Path) -> str:
    """The image format a plot's path asks for by its suffix (none: PNG). Any other suffix is
    refused before the work: every plot was written as PNG whatever its name (x.jpg, x.txt)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix and suffix not in PLOT_FORMATS:
        raise EdgerfError(f"{path}: a plot's format is its suffix's (PNG, SVG, PDF or JPEG); .{suffix} is none "
                          "of them. Name it .png (or .svg, .pdf, .jpg).")
    return suffix or "png"


def _save(fig, path: Path) -> Path:
    """The figure written atomically, in the format its suffix names."""
    import matplotlib.pyplot as plt
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=plot_format(path))
    finally:
        plt.close(fig)
    return path
