"""The ``edgerf`` command line. Each command checks its options, builds a config,
calls one library function and prints or saves what it returns; heavy imports
(torch, onnx) happen inside the commands so ``--help`` is instant and the device
side never loads the host side.

Exit codes: 0 success, 1 unexpected error, 2 bad input (message says what to fix),
3 an exported graph failed its parity gate.
"""

from __future__ import annotations

import functools
import json
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from edgerf.choices import DEVICES, FAMILY_NAMES, TRAIN_DEVICES, TRAINING_MODE_NAMES
from edgerf.errors import EdgerfError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Recurrent classifiers that run forever on edge devices, with no state reset.")


def _version(value: bool) -> None:
    if value:
        from edgerf import __version__
        typer.echo(f"edgerf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Recurrent classifiers that run forever on edge devices, with no state reset."""


def _fail(e: EdgerfError) -> None:
    typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
    raise typer.Exit(e.exit_code)


def command(fn):
    """An ``edgerf`` command whose errors become exit codes here, in one place: an
    EdgerfError exits with its code (2 bad input, 3 failed parity gate) and a ValueError (an
    option value out of range) with 2, each as one line on stderr; anything else is a bug
    and keeps its traceback (exit 1)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgerfError as e:
            _fail(e)
        except ValueError as e:
            _fail(EdgerfError(str(e)))
    return app.command()(run)


def _choice(name: str, values) -> type[Enum]:
    """A typer choice type built from a table's row names (help lists them, completion offers them)."""
    return Enum(name, {v: v for v in values}, type=str)


def _task_names() -> tuple[str, ...]:
    from edgerf.tasks import TASKS
    return tuple(TASKS)


def _need_host(command: str) -> None:
    """Host-only commands on a device install: say which extra is missing, exit 2."""
    missing = []
    for module in ("torch", "onnx"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        _fail(EdgerfError(f"`edgerf {command}` runs on the host and needs {' and '.join(missing)}, which this "
                          "installation lacks (a device install has only the runtime). "
                          "Install the host extra: pip install 'edgerf[host]'."))


def _refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force and (path.is_file() or any(path.iterdir())):
        _fail(EdgerfError(f"{path} exists; pass --force to overwrite it."))


def _data_option():
    return typer.Option(None, "--data", help="Dataset folder. When given, the command reads nothing from anywhere "
                                             "else; default: $EDGERF_DATA, then Debian's /usr/share/datasets, then "
                                             "../shared/data beside a checkout.")


def _background_option():
    return typer.Option(None, "--background", help="Audio tasks: a folder of long background recordings, cut into "
                                                   "the gaps (default: the dataset's _silence_ clips).")


def _path(p: Optional[Path]) -> Optional[str]:
    return str(p) if p else None


Task = _choice("Task", _task_names())
Family = _choice("Family", FAMILY_NAMES)
Mode = _choice("Mode", TRAINING_MODE_NAMES)
BadFrame = _choice("BadFrame", ("raise", "skip"))
Device = _choice("Device", DEVICES)
TrainDevice = _choice("TrainDevice", TRAIN_DEVICES)


@command
def train(
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint file to write (atomically)."),
    task: Task = typer.Option("sfmnist", help="Task: sfmnist (Sequential Fashion-MNIST) or gsc (Speech Commands keywords)."),
    model: Family = typer.Option("gru", help="Model family."),
    loss: Mode = typer.Option("reset-free", help="reset-free (the paper), periodic-reset or ce (baselines)."),
    hidden: int = typer.Option(128, help="Width of the recurrent layers."),
    layers: int = typer.Option(1, help="Stacked recurrent layers."),
    epochs: int = typer.Option(6, help="Passes over the training split."),
    batch: int = typer.Option(64, help="Parallel unreset training streams."),
    bptt: int = typer.Option(128, help="Truncated-BPTT chunk length in steps (state carries over)."),
    lr: float = typer.Option(3e-3, help="Peak Adam learning rate (cosine decay)."),
    seed: int = typer.Option(0, help="Seed for weights, stream order and noise."),
    train_samples: Optional[int] = typer.Option(None, help="Use only the first N training samples."),
    val_samples: int = typer.Option(500, help="Validation samples checked after each epoch."),
    test_steps: int = typer.Option(100_000, help="Length of the unreset test stream for the final numbers."),
    threads: int = typer.Option(1, help="torch intra-op threads."),
    device: TrainDevice = typer.Option("auto", help="Where to train: cuda when torch sees one, else cpu. Under "
                                                    "torchrun each process trains a share of the --batch lanes."),
    words: Optional[str] = typer.Option(None, help="Audio tasks: comma-separated keywords to learn; the other word "
                                                   "folders become _unknown_ (default: every word folder is a class)."),
    background_hours: float = typer.Option(1.0, help="Audio tasks: hours of background-only test audio on which "
                                                     "false accepts per hour are counted (0: skip)."),
    gap_kind: Optional[str] = typer.Option(None, help="What fills the gaps between samples: gaussian, uniform, "
                                                      "silence, background (audio), shuffled, or a comma-separated "
                                                      "mix (one kind drawn per gap). Default: gaussian for images, "
                                                      "background for audio."),
    gap_min: Optional[float] = typer.Option(None, help="Shortest gap (rows for images, seconds for audio)."),
    gap_max: Optional[float] = typer.Option(None, help="Longest gap (rows for images, seconds for audio)."),
    data: Optional[Path] = _data_option(),
    background: Optional[Path] = _background_option(),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a recurrent classifier on an unreset stream and write a checkpoint.

    Runs unchanged under torchrun (e.g. `torchrun --nproc_per_node 2 -m edgerf train ...`):
    the lanes are dealt over the processes, gradients averaged, rank 0 writes."""
    _need_host("train")
    from edgerf import checkpoint
    from edgerf.train import TrainConfig, train as run

    _refuse_overwrite(output, force)
    cfg = TrainConfig(task=task.value, model=model.value, loss=loss.value, hidden=hidden, layers=layers,
                      epochs=epochs, batch=batch, bptt=bptt, lr=lr, seed=seed, train_samples=train_samples,
                      val_samples=val_samples, test_steps=test_steps, threads=threads,
                      data=_path(data), device=device.value, words=words,
                      background=_path(background), background_hours=background_hours,
                      gap_kind=gap_kind, gap_min=gap_min, gap_max=gap_max)
    ckpt = run(cfg, progress=not quiet)
    if ckpt is None:          # a torchrun rank other than 0: rank 0 writes
        return
    checkpoint.save(output, ckpt)
    typer.echo(json.dumps([{k: v for k, v in r.items() if k != "det"} for r in ckpt.results["test"]]))
    typer.secho(f"wrote {output}", err=True, fg=typer.colors.GREEN)


@command
def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `edgerf train`."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output folder (default: beside the checkpoint)."),
    int8: bool = typer.Option(False, "--int8", help="Also write <name>.int8.onnx/.tflite (state-aware precision plan)."),
    format: str = typer.Option("onnx,tflite", "--format", help="Comma-separated formats: onnx, tflite."),
    name: Optional[str] = typer.Option(None, help="Artifact base name (default: checkpoint file stem)."),
    parity_steps: int = typer.Option(10_000, help="Test-stream steps of the parity gate (state fed back)."),
    calibration_steps: int = typer.Option(20_000, help="Unreset training-stream steps for int8 calibration."),
    check_steps: int = typer.Option(50_000, help="Held-out (val) steps on which the int8 plan is chosen."),
    max_acc_p_drop: float = typer.Option(0.005, help="int8 budget: largest acc_p drop against fp32 on the same "
                                                     "held-out samples (0.005 = 0.5 points); the upper end of its "
                                                     "paired 95% interval may reach twice this."),
    max_false_alarm_rise: float = typer.Option(0.0005, help="int8 budget: largest rise of the per-step false-alarm "
                                                            "rate against fp32 (0.0005 = 0.05 points)."),
    min_agreement: float = typer.Option(0.0, help="int8 budget, optional: argmax agreement with fp32 on "
                                                  "informative frames (reported either way)."),
    data: Optional[Path] = _data_option(),
    background: Optional[Path] = _background_option(),
    force: bool = typer.Option(False, "--force", help="Overwrite existing artifacts."),
    report: Optional[Path] = typer.Option(None, help="Also write the export report as JSON here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final report."),
) -> None:
    """Export a checkpoint as a stateful single-step graph (x_t, state) -> (logits_t, state'), parity-checked."""
    _need_host("export")
    from edgerf import atomic
    from edgerf.export.pipeline import ExportConfig, export_checkpoint
    from edgerf.export.quantize import Budget

    cfg = ExportConfig(formats=tuple(f.strip() for f in format.split(",") if f.strip()), int8=int8,
                       parity_steps=parity_steps, calibration_steps=calibration_steps, check_steps=check_steps,
                       budget=Budget(max_acc_p_drop, 2 * max_acc_p_drop, max_false_alarm_rise, min_agreement), force=force, name=name,
                       data=_path(data), background=_path(background))
    log = (lambda s: None) if quiet else (lambda s: typer.echo(s, err=True))
    rep = export_checkpoint(checkpoint, output, cfg, log=log, progress=not quiet)
    if report:
        atomic.write_text(report, json.dumps(rep.to_dict(), indent=2))
    typer.echo(render_export_report(rep))


def render_export_report(rep) -> str:
    lines = [f"{'artifact':32s} {'precision':9s} {'size':>9s} {'agree':>8s} {'acc_p':>7s} {'acc_f':>7s} "
             f"{'false_al':>8s}  ops"]
    for a in rep.artifacts:
        ops = " ".join(f"{k}:{v}" for k, v in a.ops.items())
        lines.append(f"{a.file:32s} {a.precision:9s} {a.size_bytes / 1024:8.1f}K "
                     f"{a.parity['argmax_agreement']:8.4f} {a.test['acc_p']:7.4f} {a.test['acc_f']:7.4f} "
                     f"{a.test['false_alarm']:8.4f}  {ops}")
    ref = rep.artifacts[0].test.get("reference")
    if ref:
        lines.append(f"{'torch (reference)':32s} {'fp32':9s} {'':9s} {1.0:8.4f} {ref['acc_p']:7.4f} "
                     f"{ref['acc_f']:7.4f} {ref['false_alarm']:8.4f}")
    for fmt, plan in (rep.plan or {}).items():
        lines.append(f"{fmt} int8 plan: {plan['plan']} ({plan['why']})")
        for t in plan["tried"]:
            if "error" in t:
                lines.append(f"  tried {t['plan']:10s}: not available ({t['error']})")
                continue
            st = ", ".join(f"{k} rms {v:.3g}" for k, v in t["rms_state"].items())
            lo, hi = t["acc_p_drop"]["ci95"]
            lines.append(f"  tried {t['plan']:10s}: acc_p {t['acc_p']:.4f} vs fp32 {t['acc_p_fp32']:.4f} "
                         f"(drop 95% CI [{lo * 100:+.2f}, {hi * 100:+.2f}] pt), false alarms {t['false_alarm']:.3%} "
                         f"vs {t['false_alarm_fp32']:.3%}, frame agreement {t['argmax_agreement']:.2%}, {st} -> "
                         f"{'within' if t['within_budget'] else 'over'} budget")
    steps = rep.artifacts[0].parity["steps"]
    lines.append(f"parity and accuracy on the same unreset test stream of {steps:,} steps; {rep.seconds:.0f} s")
    return "\n".join(lines)


@command
def inspect(artifact: Path = typer.Argument(..., help="An exported .onnx/.tflite (or its .json manifest), or a "
                                                      "checkpoint .pt.")) -> None:
    """Print an artifact's manifest, inputs/outputs, op histogram, precision and the data it came from
    (or a checkpoint's model, training command, data and results)."""
    from edgerf import manifest
    from edgerf.data.source import describe
    from edgerf.runtime.model import verify_artifact

    if artifact.suffix == ".pt":
        _inspect_checkpoint(artifact)
        return
    if artifact.suffix == ".json":
        artifact = artifact.with_suffix("")
    m = manifest.read(artifact)
    integrity = verify_artifact(artifact, m)     # a changed file is refused, never described
    integrity += "; " + manifest.verify_export(artifact)
    typer.echo(f"{artifact}  ({artifact.stat().st_size / 1024:.1f} KiB, {m['artifact']['runtime']}, "
               f"precision {m['artifact']['precision']}; {integrity})")
    mc = m["model"]
    typer.echo(f"model: {mc['family']} hidden {mc['hidden']} layers {mc['layers']}, "
               f"{len(mc['classes'])} classes: {', '.join(mc['classes'])}")
    typer.echo(f"frame: {m['frame'].get('frame_kind')} x {m['frame'].get('features')} features, "
               f"period {m['frame'].get('period_s')}; decision threshold {m['decision']['threshold']}")
    typer.echo(f"input  {m['inputs']['x']['name']:12s} {m['inputs']['x']['shape']} {m['inputs']['x']['dtype']}")
    typer.echo(f"output {m['outputs']['logits']['name']:12s} {m['outputs']['logits']['shape']}")
    for s in m["states"]:
        q = s.get("quant")
        qs = f" quantized {q['qdtype']} scale {q['scale']:.3g} zp {q['zero_point']}" if q else ""
        rng = f" range [{s['range'][0]:.3g}, {s['range'][1]:.3g}]" if "range" in s else ""
        typer.echo(f"state  {s['name']:12s} {s['input']} -> {s['output']} {s['shape']} {s['dtype']}{rng}{qs}")
    p = m.get("precision", {})
    typer.echo(f"precision plan: {p.get('plan')}" + (f" ({p['why']})" if p.get("why") else ""))
    if "parity" in m:
        par = m["parity"]
        typer.echo(f"parity vs torch: {par['steps']:,} steps, agreement {par['argmax_agreement']:.4%}, "
                   f"max |d logits| {par['max_abs_logits']:.2e}")
    try:
        from edgerf.export.formats import FORMATS
        fmt = next(f() for f in FORMATS.values() if f.suffix == artifact.suffix)
        typer.echo("ops: " + ", ".join(f"{k} {v}" for k, v in fmt.ops(artifact).items()))
    except ImportError:
        typer.echo("ops: (install edgerf[host] for the op histogram)")
    except Exception as e:        # the hash matched, so this is a reader limit, not damage
        typer.echo(f"ops: (could not list: {str(e).splitlines()[0][:100]})")
    for name, io in (("input", m["inputs"]["x"]), ("output", m["outputs"]["logits"])):
        if "quant" in io:
            q = io["quant"]
            typer.echo(f"{name} {io['name']} crosses the graph boundary as {q['dtype']} "
                       f"(scale {q['scale']:.4g}, zero point {q['zero_point']})")
    typer.echo(f"source: {m['source'].get('checkpoint')} sha256 {m['source'].get('checkpoint_sha256', '')[:16]}..., "
               f"trained with: {m['source'].get('train_command')}")
    typer.echo(f"trained on: {describe(m['source'].get('train_data'))}")
    typer.echo(f"exported on: {describe(m['source'].get('export_data'))}")
    typer.echo(f"versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}")


def _inspect_checkpoint(path: Path) -> None:
    _need_host("inspect")
    from edgerf import checkpoint
    from edgerf.data.source import describe

    ck = checkpoint.load(path)
    c = ck.model.config
    typer.echo(f"{path}  ({path.stat().st_size / 1024:.1f} KiB checkpoint, sha256 {ck.sha256[:16]}...)")
    typer.echo(f"model: {c.family} hidden {c.hidden} layers {c.layers}, {len(ck.task['classes'])} classes: "
               f"{', '.join(ck.task['classes'])}")
    typer.echo(f"task: {ck.task.get('name')}, frame {ck.task.get('frame_kind')} x {ck.task.get('features')}")
    typer.echo(f"trained with: {ck.training.get('command', 'not recorded')}")
    typer.echo(f"trained on: {describe(ck.training.get('data'))}")
    for r in ck.results.get("test", []):
        typer.echo(f"test ({r.get('eval')}, {r.get('steps', 0):,} steps): acc_p {r.get('acc_p', float('nan')):.4f}  "
                   f"acc_f {r.get('acc_f', float('nan')):.4f}  false_alarm {r.get('false_alarm', float('nan')):.4f}")
    typer.echo(f"versions: {', '.join(f'{k} {v}' for k, v in ck.versions.items())}")


def _frames(m, path: Path, source: Optional[Path]):
    """The frames of ``edgerf stream``'s source: a .wav featurized as a live stream (100 ms
    chunks, as a microphone delivers them), a .npy of frames [T, D] (uint8: raw pixel rows,
    featurized), or float32 frames on stdin (``source`` None)."""
    import numpy as np

    frame = m.manifest["frame"]
    if source is not None and source.suffix == ".wav":
        if frame.get("frame_kind") != "log-mel":
            raise EdgerfError(f"{path} takes {frame.get('frame_kind')} frames, not audio")
        from edgerf.data.speech import read_wav
        pcm = read_wav(source, int(frame.get("sample_rate", 16000)))
        for k in range(0, len(pcm), 1600):
            yield from m.featurize(pcm[k:k + 1600])
    elif source is not None:
        if not source.exists():
            raise EdgerfError(f"{source} does not exist")
        arr = np.load(source, allow_pickle=False)
        if arr.ndim != 2:
            raise EdgerfError(f"{source} holds an array of shape {arr.shape}; expected frames [T, D]")
        yield from (m.featurize(arr) if arr.dtype == np.uint8 else arr.astype(np.float32))
    else:
        size = 4 * m.features
        while chunk := sys.stdin.buffer.read(size):
            if len(chunk) < size:
                raise EdgerfError(f"stdin ended inside a frame ({len(chunk)} of {size} bytes)")
            yield np.frombuffer(chunk, np.float32)


def _event_record(ev, period: Optional[float]) -> dict:
    """An event as `edgerf stream` prints it: with times in seconds for timed frames."""
    d = ev.to_dict()
    if period:
        d |= {"start_s": round(ev.start * period, 3), "end_s": round((ev.end + 1) * period, 3)}
    return d


@command
def stream(
    model: str = typer.Argument(..., help="An exported step model (.onnx or .tflite, its .json manifest beside it), "
                                          "or a built-in name: default-gru, kws-gru (runs its int8 TFLite)."),
    source: Optional[str] = typer.Argument(None, help="A .wav recording (audio models: featurized as a live "
                                           "stream in 100 ms chunks), frames [T, D] as .npy (float: model frames; "
                                           "uint8: raw pixel rows), or - for float32 frames on stdin. Default for "
                                           "kws-gru: its built-in demo recording."),
    state: Optional[Path] = typer.Option(None, help="Resume from this state file (a refused one: start from the "
                                                    "initial state, and say why) and save to it at the end."),
    threshold: Optional[float] = typer.Option(None, help="Event threshold (default: the manifest's)."),
    window: int = typer.Option(3, help="Steps of probability smoothing."),
    on_bad_frame: BadFrame = typer.Option("raise", help="raise (stop with exit 2) or skip (count and go on) "
                                                        "frames with NaN/Inf or a wrong shape."),
    plot: Optional[Path] = typer.Option(None, help="Also draw the input, per-class probabilities and events "
                                                   "into this PNG (needs matplotlib, part of the host extra)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --plot PNG."),
) -> None:
    """Run a model over a recording or stdin and print events as JSON lines as they happen
    (class, first and last step, times in seconds for timed frames, peak confidence)."""
    import numpy as np

    from edgerf.models import BUILTINS, DEMO_RECORDING, DEMO_TRUTH, builtin_artifact
    from edgerf.runtime import EventDetector, StepModel

    if plot:
        _refuse_overwrite(plot, force)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _fail(EdgerfError("--plot needs matplotlib, which this installation lacks: pip install matplotlib "
                              "(or drop --plot)."))
    seen, events = [], []     # frames and probabilities, kept only for --plot
    try:
        path = builtin_artifact(model) if model in BUILTINS else Path(model)
        if source is None:
            if model != "kws-gru":
                raise EdgerfError("give a SOURCE (.wav, .npy or -); only the built-in kws-gru has a default "
                                  "recording.")
            source = str(DEMO_RECORDING)
        npy = None if source == "-" else Path(source)
        m = StepModel.load(path, on_bad_frame=on_bad_frame.value)
        if state and not m.resume(state) and "last_refusal" in m.health:
            typer.secho(f"warning: {m.health['last_refusal']} Starting from the initial state.", err=True,
                        fg=typer.colors.YELLOW)
        det = EventDetector(m.classes, threshold if threshold is not None else m.threshold, window)
        period = m.manifest["frame"].get("period_s")

        def emit(ev) -> None:
            events.append(_event_record(ev, period))
            typer.echo(json.dumps(events[-1]))

        for frame in _frames(m, path, npy):
            logits = m.step(frame)
            if logits is None:
                continue
            probs = m.probs(logits)
            if plot:
                seen.append((np.array(frame, np.float32).reshape(-1), probs.reshape(-1).copy()))
            if (ev := det.update(probs)) is not None:
                emit(ev)
        if (ev := det.flush()) is not None:
            emit(ev)
        if state:
            m.save_state(state)
        if plot and seen:
            from edgerf.bench.render import plot_detections
            truth = None
            if npy is not None and npy.resolve() == DEMO_RECORDING:
                truth = json.loads(DEMO_TRUTH.read_text())["words"]
            plot_detections(np.stack([f for f, _ in seen]), np.stack([p for _, p in seen]), events, m.classes,
                            plot, det.threshold, period, truth)
            typer.secho(f"wrote {plot}", err=True)
    except BrokenPipeError:       # the reader (e.g. `| head`) has gone: stop quietly
        sys.stderr.close()
        raise typer.Exit(0)
    except OSError as e:
        _fail(EdgerfError(str(e)))
    seconds = f" ({m.steps * period:.1f} s)" if period else ""
    typer.secho(f"{m.steps:,} steps{seconds}; health {m.health}", err=True)


@command
def bench(
    artifacts: List[Path] = typer.Argument(None, help="Exported .onnx/.tflite files of one model (default: all beside --ckpt, or the built-in model)."),
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="Checkpoint: torch eager reference and the artifacts beside it."),
    device: Device = typer.Option("cpu", help="cpu (this machine, or run it on the Pi itself) or arm64 (aarch64 under qemu emulation)."),
    seconds: float = typer.Option(2.0, help="Length of each latency window."),
    windows: int = typer.Option(5, help="Latency windows after warm-up."),
    steps: int = typer.Option(10_000, help="Length of the unreset accuracy stream."),
    threads: int = typer.Option(1, help="Intra-op threads for every backend."),
    report: Optional[Path] = typer.Option(None, help="Write bench.json, bench.md and PNG plots into this folder."),
    force: bool = typer.Option(False, "--force", help="Write --report into a folder that is not empty."),
    no_accuracy: bool = typer.Option(False, "--no-accuracy", help="Latency only (no dataset or bundle needed)."),
    no_rss: bool = typer.Option(False, "--no-rss", help="Skip the per-backend peak-RSS probes."),
    setup: bool = typer.Option(False, "--setup", help="With --device arm64: build the emulation sysroot (once)."),
    data: Optional[Path] = _data_option(),
    background: Optional[Path] = _background_option(),
    gap_kind: Optional[str] = typer.Option(None, help="Evaluate on other gaps than the model was trained with "
                                                      "(gaussian, uniform, silence, background, shuffled, or a mix); "
                                                      "needs the dataset."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Per-step latency and no-reset continual accuracy of every artifact, beside torch eager."""
    from edgerf.bench.run import BenchConfig, run_bench
    from edgerf.bench import render

    log = (lambda s: None) if quiet else (lambda s: typer.echo(s, err=True))
    if report:
        _refuse_overwrite(report, force)
    if setup:
        if device.value != "arm64":
            raise EdgerfError("--setup is for --device arm64")
        from edgerf.bench.arm64 import setup_sysroot
        setup_sysroot(log=log)
        return
    artifacts = list(artifacts or [])
    if not artifacts and ckpt is None:
        from edgerf.models import builtin_checkpoint
        ckpt = builtin_checkpoint("default-gru")
        log(f"benchmarking the built-in model {ckpt.stem} ({ckpt.parent})")
    cfg = BenchConfig(device=device.value, seconds=seconds, windows=windows, steps=steps, threads=threads,
                      accuracy=not no_accuracy, rss=not no_rss, data=_path(data), background=_path(background),
                      gap_kind=gap_kind)
    run = run_bench(artifacts, ckpt, cfg, progress=not quiet, log=log)
    if report:
        for f in render.write_report(run, report):
            log(f"wrote {f}")
    typer.echo(render.table(run.report))


@command
def sweep(
    task: Task = typer.Option("sfmnist", help="Task of every trial."),
    models: str = typer.Option("gru", help=f"Comma-separated families: {', '.join(FAMILY_NAMES)}."),
    losses: str = typer.Option("reset-free", help=f"Comma-separated training modes: {', '.join(TRAINING_MODE_NAMES)}."),
    seeds: str = typer.Option("0", help="Comma-separated seeds."),
    hidden: str = typer.Option("128", help="Comma-separated widths."),
    epochs: int = typer.Option(6, help="Epochs of every trial."),
    batch: int = typer.Option(64, help="Parallel unreset training streams per trial."),
    train_samples: Optional[int] = typer.Option(None, help="Use only the first N training samples."),
    val_samples: int = typer.Option(500, help="Validation samples checked after each epoch."),
    test_steps: int = typer.Option(100_000, help="Length of the unreset test stream of every trial."),
    out: Path = typer.Option(Path("runs/sweep"), "-o", "--out", help="Folder for the trials' checkpoints and logs; "
                                                                     "finished trials found here are reused."),
    results: Optional[Path] = typer.Option(None, help="Prefix of the result tables (.jsonl, .md); default OUT/sweep."),
    address: Optional[str] = typer.Option(None, help="Address of an existing Ray cluster (default: a local Ray "
                                                    "inside this command)."),
    cpus: int = typer.Option(1, help="CPUs (torch threads) per trial."),
    engine: str = typer.Option("auto", help="ray, pool (local processes), or auto: ray when edgerf[sweep] is "
                                            "installed."),
    data: Optional[Path] = _data_option(),
    background: Optional[Path] = _background_option(),
) -> None:
    """Train a grid (families x losses x seeds x widths) as Ray Tune trials; resumable."""
    _need_host("sweep")
    from edgerf.sweep import SweepConfig, run_sweep
    from edgerf.train import TrainConfig

    def listed(text: str, kind=str, known=None):
        values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        bad = [v for v in values if known is not None and v not in known]
        if not values or bad:
            raise typer.BadParameter(f"{text!r}: expected a comma-separated list" +
                                     (f" of {', '.join(known)}" if known else ""))
        return values

    try:
        cfg = SweepConfig(
            base=TrainConfig(task=task.value, epochs=epochs, batch=batch, train_samples=train_samples,
                             val_samples=val_samples, test_steps=test_steps, data=_path(data),
                             background=_path(background)),
            models=listed(models, known=FAMILY_NAMES), losses=listed(losses, known=TRAINING_MODE_NAMES),
            seeds=listed(seeds, int), hidden=listed(hidden, int), out=str(out),
            results=str(results) if results else None, address=address, cpus=cpus, engine=engine)
        run_sweep(cfg, log=lambda s: typer.echo(s, err=True))
    except ImportError as e:
        _fail(EdgerfError(str(e)))


@command
def plot(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `edgerf train`."),
    output: Path = typer.Option(..., "-o", "--output", help="PNG to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing PNG."),
    steps: int = typer.Option(600, help="Steps of the excerpt."),
    seed: int = typer.Option(3, help="Which test stream (seed)."),
    data: Optional[Path] = _data_option(),
    background: Optional[Path] = _background_option(),
) -> None:
    """Plot a stream excerpt: input features, the mask, per-step prediction (correct/wrong), no reset."""
    _need_host("plot")
    _refuse_overwrite(output, force)
    from edgerf import checkpoint as ckpt_io
    from edgerf.bench.render import plot_stream_excerpt
    from edgerf.tasks import get_task
    from edgerf.train import predict

    ck = ckpt_io.load(checkpoint)
    task = get_task(ck.task).bind(_path(data), _path(background))
    stream = task.stream("test", task.samples_for_steps(steps), seed=seed)
    logits = predict(ck.model, stream)
    who = f"{ck.model.config.family}, {ck.training.get('config', {}).get('loss', '?')}"
    plot_stream_excerpt(stream, logits, who, output, task.threshold, steps=steps)
    typer.echo(f"wrote {output}")


def main() -> None:  # pragma: no cover - console entry for `python -m edgerf.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
