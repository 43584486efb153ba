"""The ``edgerf`` command line. Each command checks its options, builds a config,
calls one library function and prints or saves what it returns; heavy imports
(torch, onnx) happen inside the commands so ``--help`` is instant and the device
side never loads the host side.

Exit codes: 0 success, 1 unexpected error, 2 bad input (message says what to fix),
3 an exported graph failed its parity gate, 130 or 143 stopped by SIGINT or SIGTERM (a
stream saves its state; on Ctrl-C every command says what was and was not written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sys
import typing
from enum import Enum
from inspect import Parameter, Signature, signature
from pathlib import Path
from typing import List, Optional

import typer

from edgerf.choices import DEVICES, FAMILY_NAMES, READOUT_NAMES, TASK_NAMES, TRAIN_DEVICES, TRAINING_MODE_NAMES
from edgerf.configs import BenchConfig, Budget, ExportConfig, TrainConfig
from edgerf.runtime.errors import EdgerfError, Interrupted
from edgerf.runtime.events import MAX_WINDOW
from edgerf.runtime.targets import listing

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
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
    if isinstance(e, Interrupted):          # the user's own stop: said, not an error
        typer.secho(str(e), err=True, fg=typer.colors.YELLOW)
    else:
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
    raise typer.Exit(e.exit_code)


def command(*configs, choices: dict | None = None):
    """Register an ``edgerf`` command.

    Its options are its own parameters, then one per field of each config dataclass in
    ``configs`` that declares a help text (``edgerf.configs.option``): default and help come
    from the dataclass, a field named in ``choices`` is offered as that choice type, and the
    values arrive in the command's ``**options``. Errors become exit codes here, in one
    place: an EdgerfError exits with its code (2 bad input, 3 failed parity gate) and a
    ValueError (an option value out of range) with 2, each as one line on stderr; anything
    else is a bug and keeps its traceback (exit 1)."""
    def register(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except EdgerfError as e:
                _fail(e)
            except ValueError as e:
                _fail(EdgerfError(str(e)))
            except KeyboardInterrupt:           # Ctrl-C where the command has nothing more to say
                _fail(Interrupted("interrupted."))
        if configs:
            own = [q for q in signature(fn).parameters.values() if q.kind != q.VAR_KEYWORD]
            run.__signature__ = Signature(own + [o for c in configs for o in _options(c, choices or {})])
        return app.command()(run)
    return register


def _options(cls, choices: dict) -> list[Parameter]:
    """One keyword-only typer option per documented field of the config dataclass ``cls``."""
    from edgerf.configs import default_of

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        default, annotation = default_of(f), hints[f.name]
        if f.name in choices:
            annotation, default = choices[f.name], choices[f.name](default)
        elif isinstance(default, tuple):                       # a list option: comma-separated
            annotation, default = str, ",".join(default)
        out.append(Parameter(f.name, Parameter.KEYWORD_ONLY, annotation=annotation,
                                     default=typer.Option(default, *f.metadata["flags"], help=f.metadata["help"])))
    return out


def _config(cls, options: dict, **given):
    """The config ``cls`` from parsed option values (choices back to their names, comma lists
    to tuples) and ``given`` fields."""
    from edgerf.configs import default_of

    kw = dict(given)
    for f in dataclasses.fields(cls):
        if f.name in options:
            v = options[f.name]
            v = v.value if isinstance(v, Enum) else v
            if isinstance(default_of(f), tuple) and isinstance(v, str):
                v = tuple(x.strip() for x in v.split(",") if x.strip())
            kw[f.name] = v
    return cls(**kw)


def _choice(name: str, values) -> type[Enum]:
    """A typer choice type built from a table's row names (help lists them, completion offers them)."""
    return Enum(name, {v: v for v in values}, type=str)


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


def _refuse_overwrite(path: Path, force: bool, folder: bool = False) -> None:
    """Before any work: refuse an output ``path`` that exists unless ``force`` (a ``folder``
    output: one with something in it), and, force or not, one that cannot be written at all
    (a device or a FIFO; a directory where a file goes)."""
    from edgerf.runtime.atomic import write_target
    from edgerf.runtime.files import special_kind

    if folder and path.exists():
        if not path.is_dir():
            _fail(EdgerfError(f"{path} is {special_kind(path.stat().st_mode) or 'a file'}, not a folder; give a "
                              "folder to write into (it is made if missing)."))
        if not force and any(path.iterdir()):
            _fail(EdgerfError(f"{path} is not empty; pass --force to write into it."))
        return
    write_target(path)
    if path.exists() and not force:
        _fail(EdgerfError(f"{path} exists; pass --force to overwrite it."))


def _same_as(cls, name: str, choice: type[Enum] | None = None):
    """A typer option with the default and help of field ``name`` of config ``cls``, for a
    command that takes that one field (sweep, plot) without the whole config."""
    from edgerf.configs import default_of

    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = default_of(f) if choice is None else choice(default_of(f))
    return typer.Option(default, *f.metadata["flags"], help=f.metadata["help"])


def _path(p: Optional[Path]) -> Optional[str]:
    return str(p) if p else None


Task = _choice("Task", TASK_NAMES)
Family = _choice("Family", FAMILY_NAMES)
Mode = _choice("Mode", TRAINING_MODE_NAMES)
Readout = _choice("Readout", READOUT_NAMES)
BadFrame = _choice("BadFrame", ("raise", "skip"))
Device = _choice("Device", DEVICES)
TrainDevice = _choice("TrainDevice", TRAIN_DEVICES)


@command(TrainConfig, choices={"task": Task, "model": Family, "loss": Mode, "readout": Readout,
                               "device": TrainDevice})
def train(
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint file to write (atomically)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from OUTPUT.train-state "
                                                        "(written with --save-every; the same options)."),
    **options,
) -> None:
    """Train a recurrent classifier on an unreset stream and write a checkpoint.

    Runs unchanged under torchrun (e.g. `torchrun --nproc_per_node 2 -m edgerf train ...`):
    the lanes are dealt over the processes, gradients averaged, rank 0 writes."""
    _need_host("train")
    from edgerf import checkpoint
    from edgerf.train import train as run

    if not resume:
        _refuse_overwrite(output, force)
    if output.suffix != ".pt":           # stream and inspect know a checkpoint by its suffix
        raise typer.BadParameter(f"{output}: a checkpoint is a .pt file (edgerf stream and inspect know it by that"
                                 f"{'; ' + output.suffix + ' names another kind of file' if output.suffix else ''}). "
                                 "Give NAME.pt.", param_hint="-o")
    cfg = _config(TrainConfig, options)
    state_file = output.with_name(output.name + ".train-state")
    if resume and not state_file.exists():
        raise EdgerfError(f"--resume: no saved training state at {state_file}; start without --resume "
                          "(and with --save-every to keep one).")
    try:
        ckpt = run(cfg, progress=not quiet, state_file=state_file if cfg.save_every is not None or resume else None,
                   resume=resume)
    except KeyboardInterrupt:               # Ctrl-C: say what is left to continue from
        kept = (f"The training state last saved is in {state_file}: the same command with --resume continues "
                "from it." if state_file.exists() else "Nothing to continue from: with --save-every MINUTES a run "
                "keeps a training state that --resume continues.")
        raise Interrupted(f"interrupted: {output} not written. {kept}") from None
    if ckpt is None:          # a torchrun rank other than 0: rank 0 writes
        return
    checkpoint.save(output, ckpt)
    for f in [state_file, *state_file.parent.glob(state_file.name + ".rank*")]:
        f.unlink(missing_ok=True)               # the run is done: nothing to resume
    typer.echo(json.dumps([{k: v for k, v in r.items() if k != "det"} for r in ckpt.results["test"]]))
    typer.secho(f"wrote {output}", err=True, fg=typer.colors.GREEN)


@command(ExportConfig, Budget)
def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `edgerf train`, or a built-in name "
                                                "(default-gru, kws-gru: its shipped checkpoint)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output folder (default: beside the checkpoint; "
                                                                     "a built-in needs one)."),
    report: Optional[Path] = typer.Option(None, help="Also write the export report as JSON here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final report."),
    **options,
) -> None:
    """Export a checkpoint as a stateful single-step graph (x_t, state) -> (logits_t, state'), parity-checked."""
    _need_host("export")
    from edgerf.runtime import atomic
    from edgerf.export.pipeline import export_checkpoint, output_files
    from edgerf.models import builtin_checkpoint, is_builtin_name

    cfg = _config(ExportConfig, options, budget=_config(Budget, options))
    if is_builtin_name(checkpoint):
        if output is None:                  # beside it is the installed package, whose files are checked
            raise typer.BadParameter(f"{checkpoint} is a built-in; give an output folder for its export.",
                                     param_hint="-o")
        checkpoint = builtin_checkpoint(str(checkpoint))
    if report is not None and report.resolve() in {f.resolve() for f in output_files(checkpoint, output, cfg)}:
        raise typer.BadParameter(f"{report} is a file this export writes; give the report another path.",
                                 param_hint="--report")
    if report is not None:
        atomic.write_target(report)          # a folder or a device there: refused before the export, not after
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
            detects = t["acc_p_drop"].get("power", {}).get("detectable_drop", float("nan"))
            lines.append(f"  tried {t['plan']:10s}: acc_p {t['acc_p']:.4f} vs fp32 {t['acc_p_fp32']:.4f} "
                         f"(drop 95% CI [{lo * 100:+.2f}, {hi * 100:+.2f}] pt, detects {detects * 100:.2f} pt), "
                         f"false alarms {t['false_alarm']:.3%} vs {t['false_alarm_fp32']:.3%}, frame agreement "
                         f"{t['argmax_agreement']:.2%}, {st} -> {'within' if t['within_budget'] else 'over'} budget")
    steps = rep.artifacts[0].parity["steps"]
    lines.append(f"parity and accuracy on the same unreset test stream of {steps:,} steps; {rep.seconds:.0f} s")
    return "\n".join(lines)


def _model_line(model: dict, classes: list[str]) -> str:
    """What `inspect` says of a model, from a manifest's `model` or a checkpoint's config."""
    extra = (f", frontend {model['frontend']}" if model.get("frontend") else "") + \
        (f", {model['readout']} readout" if model.get("readout", "linear") != "linear" else "")
    return (f"model: {model['family']} hidden {model['hidden']} layers {model['layers']}{extra}, "
            f"{len(classes)} classes: {', '.join(classes)}")


@command()
def inspect(artifact: Path = typer.Argument(..., help="An exported .onnx/.tflite (or its .json manifest), a "
                                                      "checkpoint .pt, or a built-in name: default-gru, kws-gru "
                                                      "(its int8 TFLite)."),
            allow_unverified: bool = typer.Option(False, "--allow-unverified", help="Describe an artifact whose "
                                                  "manifest is not sealed into it (said in the output).")) -> None:
    """Print an artifact's manifest, inputs/outputs, op histogram, precision and the data it came from
    (or a checkpoint's model, training command, data and results)."""
    from edgerf.data.source import describe
    from edgerf.models import BUILTINS, model_path
    from edgerf.runtime import manifest

    artifact = model_path(artifact)

    if artifact.suffix == ".pt":
        _inspect_checkpoint(artifact)
        return
    given = artifact
    if artifact.suffix == ".json":
        artifact = artifact.with_suffix("")
    if artifact.suffix not in (".onnx", ".tflite"):
        _fail(EdgerfError(f"{given} is not something inspect describes: give an exported .onnx or .tflite (or "
                          f"its .json manifest), a checkpoint .pt, or a built-in name ({', '.join(BUILTINS)})."))
    m, integrity = manifest.read_verified(artifact, allow_unverified)   # a changed file is refused, never described
    integrity += "; " + manifest.verify_export(artifact)
    typer.echo(f"{artifact}  ({artifact.stat().st_size / 1024:.1f} KiB, {m['artifact']['runtime']}, "
               f"precision {m['artifact']['precision']}; {integrity})")
    typer.echo(_model_line(m["model"], m["model"]["classes"]))
    typer.echo(f"frame: {m['frame'].get('frame_kind')} x {m['frame'].get('features')} features, "
               f"period {m['frame'].get('period_s')}; decision threshold {m['decision']['threshold']}")
    _test_lines(m["decision"].get("operating_point"), m["source"].get("test") or [])
    mcu = m.get("microcontroller")
    if mcu:
        typer.echo("TFLite Micro: " + (f"runs; arena {mcu['arena_bytes']:,} bytes ({mcu['arena_note']}), flash "
                                       f"{mcu['flash_bytes']:,} bytes; ops {', '.join(mcu['ops'])}" if mcu["runs"]
                                       else f"not run: {mcu['why']}"))
    for name, t in (m.get("targets") or {}).items():
        typer.echo(f"on {name}: {t.get('summary', t)} (at export)")
    typer.echo(f"input  {m['inputs']['x']['name']:12s} {m['inputs']['x']['shape']} {m['inputs']['x']['dtype']}")
    typer.echo(f"output {m['outputs']['logits']['name']:12s} {m['outputs']['logits']['shape']}")
    typer.echo(f"output {'probs':12s} " + (f"{m['outputs']['probs']['shape']} softmax of the logits, computed in the graph"
                                          if "probs" in m["outputs"] else
                                          "none: exported before graphs had it (the runtime computes the softmax)"))
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


def _test_lines(op: dict | None, records: list[dict]) -> None:
    """The test figures training recorded (torch fp32) and, for an audio model, its operating
    point and its false accepts, each with what it rests on."""
    nan = float("nan")
    for r in records:
        typer.echo(f"test ({r.get('eval')}, torch fp32, {r.get('steps', 0):,} steps, {r.get('samples', 0):,} "
                   f"samples): acc_p {r.get('acc_p', nan):.4f}, acc_f {r.get('acc_f', nan):.4f}, "
                   f"false alarms {r.get('false_alarm', nan):.2%}")
    if op:
        typer.echo(f"operating point: window {op.get('window', 3)} steps, merge {op.get('merge', 0)} steps, threshold "
                   f"{op['threshold']:.2f}, chosen on {op['chosen_on']} ({op['rule']}): "
                   f"{op['misses']} of {op['keywords']} keywords missed, {op['false_accepts']} false accepts over "
                   f"{op['val_stream_s']:.0f} s of val stream and {op['val_background_s']:.0f} s of val background")
    for r in records:
        if "background_fa" not in r:
            continue
        bg, un = r["background_fa"], r["unknown_fa"]
        typer.echo(f"test keywords at the operating point: {r['hits']} found, {r['misses']} missed, "
                   f"{r['false_accepts']} false accepts in the stream; on background {bg['false_accepts']} in "
                   f"{bg['seconds']:.0f} s of distinct audio ({bg['per_hour']:.0f}/h, 95% upper bound "
                   f"{bg['per_hour_upper95']:.0f}/h); on non-keyword speech {un['false_accepts']} in "
                   f"{un['seconds']:.0f} s (upper bound {un['per_hour_upper95']:.0f}/h)")


def _inspect_checkpoint(path: Path) -> None:
    _need_host("inspect")
    from edgerf import checkpoint
    from edgerf.data.source import describe

    ck = checkpoint.load(path)
    c = ck.model.config
    typer.echo(f"{path}  ({path.stat().st_size / 1024:.1f} KiB checkpoint, sha256 {ck.sha256[:16]}...)")
    typer.echo(_model_line(c.to_dict(), ck.task["classes"]))
    typer.echo(f"task: {ck.task.get('name')}, frame {ck.task.get('frame_kind')} x {ck.task.get('features')}")
    typer.echo(f"trained with: {ck.training.get('command', 'not recorded')}")
    typer.echo(f"trained on: {describe(ck.training.get('data'))}")
    _test_lines(ck.decision, ck.results.get("test", []))
    typer.echo(f"versions: {', '.join(f'{k} {v}' for k, v in ck.versions.items())}")


# A frames file for `stream` (float32 [T, D]): 256 MB is over an hour of 40-band frames at
# 100 per second; larger recordings go through stdin, read in bounded chunks.
MAX_FRAMES_BYTES = 1 << 28


# stdin audio is read as it arrives, at most 4 s of 16 kHz 16-bit audio per read (a live
# source delivers less: read1 returns what is there, so events stay live)
PCM_CHUNK_BYTES = 128_000
WAV_CHUNK = 16_000       # a recording is fed in 1 s chunks (the front end streams: any size gives the same frames)
FRAMES_CHUNK = 1_000     # frames of a .npy are stepped 1,000 at a time
PLOT_STEPS = 30_000      # --plot draws at most the last this many steps (20 min of 40 ms steps): a live stream has no end


def _source_kind(source: Path) -> str:
    """"wav" or "npy" for a SOURCE file: by its suffix in any case, else by its first bytes (a
    recorder's REC001.WAV, a renamed file); anything else is refused, naming what SOURCE takes."""
    from edgerf.runtime.audio import WAV_STREAM_TAGS
    from edgerf.runtime.files import FileRefused, open_regular

    if not source.exists():
        raise EdgerfError(f"{source} does not exist")
    suffix = source.suffix.lower()
    if suffix in (".wav", ".npy"):
        return suffix[1:]
    try:
        with open_regular(source, 1 << 62, "a SOURCE") as f:     # any size: only its first bytes are read
            head = f.read(12)
    except FileNotFoundError:
        raise EdgerfError(f"{source} does not exist") from None
    except FileRefused as e:
        raise EdgerfError(f"{str(e).rstrip('.')}; a pipe goes to stdin: ... | edgerf stream MODEL -") from None
    if head[:4] in WAV_STREAM_TAGS and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    raise EdgerfError(f"{source} is neither a WAV recording nor a .npy frames file: SOURCE is a .wav, a .npy of "
                      "frames [T, D], or - for stdin.")


def _chunks(m, path: Path, source: Optional[Path], float_frames: bool = False):
    """The input of ``edgerf stream``, as ("audio", float PCM) or ("frames", [T, D]) chunks: a
    .wav (audio models), a .npy of frames [T, D] (uint8: raw pixel rows, featurized), or stdin
    (``source`` None): raw 16-bit mono PCM for audio models (what ``arecord -f S16_LE``
    writes), float32 frames otherwise or with ``float_frames``."""
    import numpy as np

    frame = m.manifest["frame"]
    if source is None and sys.stdin is None:          # started with stdin closed (cmd <&-, a daemon)
        raise EdgerfError("stdin is closed: - reads what is piped in (arecord -f S16_LE -r 16000 -c 1 | "
                          "edgerf stream MODEL -), or give a file as SOURCE.")
    if source is None and frame.get("frame_kind") == "log-mel" and not float_frames:
        from edgerf.runtime.audio import WAV_STREAM_TAGS, pcm16_to_float, stream_wav_header
        stdin = sys.stdin.buffer
        read = getattr(stdin, "read1", stdin.read)      # what has arrived, not a full buffer: events stay live
        rate = int(frame.get("sample_rate", 16000))
        carry, start = b"", None                        # start: where the samples begin, once known
        while chunk := read(PCM_CHUNK_BYTES):
            data = carry + chunk
            if start is None:                           # arecord writes a WAV header unless given -t raw
                start = stream_wav_header(data, rate)
                if start is None:
                    carry = data
                    continue
                data = data[start:]
            n = len(data) - len(data) % 2
            carry = data[n:]
            if n:
                yield "audio", pcm16_to_float(data[:n])
        if start is None and carry[:4] in WAV_STREAM_TAGS and carry[8:12] == b"WAVE":
            raise EdgerfError("stdin ended inside a WAV header, before any audio.")
        if start is None and len(carry) > 1:            # a few raw bytes, too few to tell from a header
            yield "audio", pcm16_to_float(carry[:len(carry) // 2 * 2])
        if len(carry) % 2:
            raise EdgerfError("stdin ended inside a 16-bit sample (one stray byte): the audio on stdin is raw "
                            f"16-bit mono PCM (arecord -f S16_LE -r {rate} -c 1) or a WAV stream of it.")
        return
    kind = None if source is None else _source_kind(source)
    if kind == "wav":
        if frame.get("frame_kind") != "log-mel":
            raise EdgerfError(f"{path} takes {frame.get('frame_kind')} frames, not audio")
        from edgerf.runtime.audio import read_wav
        pcm = read_wav(source, int(frame.get("sample_rate", 16000)))
        for k in range(0, len(pcm), WAV_CHUNK):
            yield "audio", pcm[k:k + WAV_CHUNK]
    elif kind == "npy":
        from edgerf.runtime.files import read_npy
        arr = read_npy(source, MAX_FRAMES_BYTES, "a frames file")
        if arr.ndim != 2:
            raise EdgerfError(f"{source} holds an array of shape {arr.shape}; expected frames [T, D]")
        if arr.dtype.kind not in "fiu":       # complex or bool or text: a cast would drop or invent values
            raise EdgerfError(f"{source} holds {arr.dtype} values; frames are real numbers (float, or uint8 "
                              "pixel rows).")
        for k in range(0, len(arr), FRAMES_CHUNK):
            part = arr[k:k + FRAMES_CHUNK]
            yield "frames", m.featurize(part) if arr.dtype == np.uint8 else part.astype(np.float32)
    else:
        size = 4 * m.features
        while chunk := sys.stdin.buffer.read(size):
            if len(chunk) < size:
                raise EdgerfError(f"stdin ended inside a frame ({len(chunk)} of {size} bytes)")
            yield "frames", np.frombuffer(chunk, np.float32)


class _Stop:
    """How `edgerf stream` stops on a signal. A live stream ends by Ctrl-C or by its service
    manager's SIGTERM, not by the end of its input: either one finishes the chunk in hand,
    reports the event still open, saves --state and exits 130 or 143. While a chunk steps
    both signals wait (``deferred``), so a stop never lands between one step's state tensors."""

    def __init__(self):
        import signal
        self._signal, self._by_term = signal, False
        self._mask = getattr(signal, "pthread_sigmask", None)          # POSIX; elsewhere no deferral
        self._blocked = {signal.SIGINT, signal.SIGTERM}
        try:
            self._previous = signal.signal(signal.SIGTERM, self._on_term)
        except ValueError:                                             # not the main thread: leave SIGTERM be
            self._previous = None

    def _on_term(self, signum, frame):
        self._by_term = True
        raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        return 143 if self._by_term else 130

    @contextlib.contextmanager
    def deferred(self):
        old = self._mask(self._signal.SIG_BLOCK, self._blocked) if self._mask else None
        try:
            yield
        finally:
            if self._mask:
                self._mask(self._signal.SIG_SETMASK, old)

    def restore(self) -> None:
        if self._previous is not None:
            self._signal.signal(self._signal.SIGTERM, self._previous)


def _event_record(ev, period: Optional[float]) -> dict:
    """An event as `edgerf stream` prints it: with times in seconds for timed frames."""
    d = ev.to_dict()
    if period:
        d |= {"start_s": round(ev.start * period, 3), "end_s": round((ev.end + 1) * period, 3)}
    return d


def _open_unit(value: Optional[float]) -> Optional[float]:
    """A probability threshold: strictly between 0 and 1 (Click's ranges are closed)."""
    if value is not None and not 0.0 < value < 1.0:
        raise typer.BadParameter(f"{value} is not in (0, 1): a threshold on smoothed probabilities.")
    return value


@command()
def stream(
    model: str = typer.Argument(..., help="An exported step model (.onnx or .tflite, its .json manifest beside it), "
                                          "a checkpoint .pt (run in torch, before export), or a built-in name: "
                                          "default-gru, kws-gru (runs its int8 TFLite; with an ONNX --target, its ONNX)."),
    source: Optional[str] = typer.Argument(None, help="A .wav recording (audio models: featurized as a live "
                                           "stream in 100 ms chunks), frames [T, D] as .npy (float: model frames; "
                                           "uint8: raw pixel rows; a file of another name is known by its first "
                                           "bytes), or - for stdin: 16-bit mono PCM at the "
                                           "model's rate for audio models, raw or with the WAV header arecord "
                                           "writes (checked) (arecord -f S16_LE -r 16000 -c 1 | "
                                           "edgerf stream kws-gru -), float32 frames otherwise. Default for "
                                           "kws-gru: its built-in demo recording."),
    state: Optional[Path] = typer.Option(None, help="Resume from this state file and save to it at the end. A "
                                                    "refused one (another model's, damaged) is kept as "
                                                    "NAME.refused; the stream starts from the initial state "
                                                    "and says why."),
    threshold: Optional[float] = typer.Option(None, callback=_open_unit,
                                              help="Event threshold, in (0, 1) (default: the manifest's)."),
    window: Optional[int] = typer.Option(None, min=1, max=MAX_WINDOW,
                                         help="Steps of probability smoothing (default: the manifest's "
                                              "operating point, else 3)."),
    on_bad_frame: BadFrame = typer.Option("raise", help="raise (stop with exit 2) or skip (count and go on) "
                                                        "frames with NaN/Inf or a wrong shape."),
    plot: Optional[Path] = typer.Option(None, help="Also draw the input, per-class probabilities and events "
                                                   "into this image (PNG; SVG, PDF, JPEG by suffix) at the end "
                                                   f"(the last {PLOT_STEPS:,} steps of a longer stream; needs "
                                                   "matplotlib, part of the host extra)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --plot PNG."),
    allow_unverified: bool = typer.Option(False, "--allow-unverified", help="Run an artifact whose manifest is "
                                          "not sealed into it (nothing proves what it computes; said on stderr)."),
    float_frames: bool = typer.Option(False, "--float-frames", help="stdin carries float32 feature frames, "
                                      "not audio (audio models)."),
    all_classes: bool = typer.Option(False, "--all-classes", help="Also report events of classes that are not "
                                     "keywords (_unknown_ and any the manifest marks as filler)."),
    target: Optional[str] = typer.Option(None, help=f"What runs the artifact: {listing()}. Default: the first "
                                         "installed of litert, tflm, numpy (.tflite) or ort, onnx-ref (.onnx). "
                                         "With a built-in name, picks the built-in's graph of that target's format."),
) -> None:
    """Run a model over a recording or stdin and print events as JSON lines as they happen
    (class, first and last step, times in seconds for timed frames, peak confidence)."""
    import numpy as np

    from edgerf.models import DEMO_RECORDING, DEMO_TRUTH, model_path
    from edgerf.runtime import StepModel
    from edgerf.runtime.spotter import Spotter, steady_heap

    if plot:
        from edgerf.bench.render import plot_format
        _refuse_overwrite(plot, force)
        plot_format(plot)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _fail(EdgerfError("--plot needs matplotlib, which this installation lacks: pip install matplotlib "
                              "(or drop --plot)."))
    try:
        path = model_path(model, target)
        if source is None:
            if model != "kws-gru":
                raise EdgerfError("give a SOURCE (.wav, .npy or -); only the built-in kws-gru has a default "
                                  "recording.")
            source = str(DEMO_RECORDING)
        npy = None if source == "-" else Path(source)
        if float_frames and npy is not None:
            raise EdgerfError(f"--float-frames says what stdin carries; {npy} is a file (its kind says what it "
                              "holds). Drop the option, or give - to read frames from stdin.")
        if path.suffix == ".pt" and target is not None:
            raise EdgerfError(f"--target picks what runs an exported artifact; {path} is a checkpoint, which runs "
                              "in torch. Export it (edgerf export) and stream the .onnx or .tflite on that target.")
        if path.suffix == ".pt":      # a checkpoint, before export: torch steps it, the runtime does the rest
            try:
                from edgerf import torch_step
            except ImportError:
                raise EdgerfError(f"{path} is a checkpoint, which runs in torch: pip install \"edgerf[host]\", "
                                  "or stream one of its exported artifacts (edgerf export).") from None
            m = torch_step.load(path, on_bad_frame=on_bad_frame.value)
            typer.secho(f"{path}: a checkpoint, run in torch (not an exported artifact; export it to check "
                        "what a device computes).", err=True)
        else:
            m = StepModel.load(path, on_bad_frame=on_bad_frame.value, allow_unverified=allow_unverified,
                               target=target)
            if m.integrity.startswith("UNVERIFIED"):
                typer.secho(f"warning: {path}: {m.integrity}", err=True, fg=typer.colors.YELLOW)
        if state and not m.resume(state) and "last_refusal" in m.health:
            typer.secho(f"warning: {m.health['last_refusal']} Starting from the initial state.", err=True,
                        fg=typer.colors.YELLOW)
        steady_heap()             # the long-running loop: no heap trimming and refaulting per chunk
        seen = None                           # frames and probabilities for --plot
        if plot:
            from edgerf.bench.render import StreamTail
            seen = StreamTail(PLOT_STEPS)
        spotter = Spotter(m, threshold, window, all_classes, keep=seen)
        period = m.manifest["frame"].get("period_s")

        def emit(evs) -> None:
            for ev in evs:
                record = _event_record(ev, period)
                typer.echo(json.dumps(record))        # click flushes each line: events stay live in a pipe
                if seen is not None:                  # the plot's: its tail's events, no more
                    seen.event(record)

        stop, stopped, failed, steps_before = _Stop(), False, None, m.steps
        try:
            for kind, data in _chunks(m, path, npy, float_frames):
                with stop.deferred():
                    emit(spotter.feed(data) if kind == "audio" else spotter.feed_frames(data))
        except KeyboardInterrupt:
            stopped = True
        except EdgerfError as e:              # bad input mid-stream (a refused frame, a cut sample): exit 2,
            failed = e                        # after the event still open and the state of the input before it
        finally:
            stop.restore()
        with stop.deferred():                 # a second Ctrl-C waits for the event and the state
            emit(spotter.flush())
            if state and (failed is None or m.steps > steps_before):
                m.save_state(state)
        if plot and seen.rows:
            from edgerf.bench.render import plot_detections
            truth = None
            if npy is not None and npy.resolve() == DEMO_RECORDING:
                truth = json.loads(DEMO_TRUTH.read_text())["words"]
            plot_detections(*seen.arrays(), list(seen.events), m.classes, plot, spotter.threshold, period, truth,
                            seen.first)
            typer.secho(f"wrote {plot}", err=True)
        if failed is not None:
            raise failed
    except BrokenPipeError:       # the reader (e.g. `| head`) has gone: stop quietly
        sys.stderr.close()
        raise typer.Exit(0)
    except OSError as e:
        _fail(EdgerfError(str(e)))
    seconds = f" ({m.steps * period:.1f} s)" if period else ""
    typer.secho(f"{m.steps:,} steps{seconds} on {m.target}; health {m.health}"
                + (f"; stopped by a signal{', state saved' if state else ''}" if stopped else ""), err=True)
    if stopped:
        raise typer.Exit(stop.exit_code)


@command(BenchConfig, choices={"device": Device})
def bench(
    artifacts: List[Path] = typer.Argument(None, help="Exported .onnx/.tflite files of one model, or a built-in "
                                           "name (default-gru, kws-gru). Default: all beside --ckpt, or the "
                                           "built-in default-gru."),
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="Checkpoint: torch eager reference and the artifacts beside it."),
    report: Optional[Path] = typer.Option(None, help="Write bench.json, bench.md and PNG plots into this folder."),
    force: bool = typer.Option(False, "--force", help="Write --report into a folder that is not empty."),
    setup: bool = typer.Option(False, "--setup", help="With --device arm64: build the emulation sysroot (once)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    **options,
) -> None:
    """Per-step latency and no-reset continual accuracy of every artifact, beside torch eager."""
    from edgerf.bench import render
    from edgerf.bench.run import run_bench

    log = (lambda s: None) if quiet else (lambda s: typer.echo(s, err=True))
    if report:
        _refuse_overwrite(report, force, folder=True)
    cfg = _config(BenchConfig, options)
    if setup:
        if cfg.device != "arm64":
            raise EdgerfError("--setup is for --device arm64")
        from edgerf.bench.arm64 import home, setup_sysroot
        try:
            setup_sysroot(log=log)
        except OSError as e:            # an unwritable or full cache folder
            raise EdgerfError(f"cannot set up the arm64 emulation in {home()} ({e.strerror or e}); free some "
                              "space there or point $EDGERF_CACHE at a writable folder.") from e
        return
    from edgerf.models import builtin_checkpoint, is_builtin_name
    # one artifact named twice (a glob and a path to it) is benched once, as a format named twice is exported once
    artifacts = list({a.resolve() if a.exists() else a: a for a in artifacts or []}.values())
    named = [a for a in artifacts if is_builtin_name(a)]
    if named and (len(artifacts) > 1 or ckpt is not None):
        raise EdgerfError(f"{named[0]} is a built-in model: bench it alone (edgerf bench {named[0]}), not beside "
                          "other artifacts or --ckpt.")
    if [a for a in artifacts if a.suffix == ".pt"]:
        raise EdgerfError("a checkpoint goes with --ckpt (its torch reference, and the artifacts beside it); "
                          "ARTIFACTS are exported .onnx/.tflite files.")
    if named or (not artifacts and ckpt is None):
        ckpt, artifacts = builtin_checkpoint(str(named[0]) if named else "default-gru"), []
        log(f"benchmarking the built-in model {ckpt.stem} ({ckpt.parent})")
    run = run_bench(artifacts, ckpt, cfg, progress=not quiet, log=log)
    if report:
        for f in render.write_report(run, report):
            log(f"wrote {f}")
    typer.echo(render.table(run.report))


@command()
def sweep(
    task: Task = _same_as(TrainConfig, "task", Task),
    models: str = typer.Option("gru", help=f"Comma-separated families: {', '.join(FAMILY_NAMES)}."),
    losses: str = typer.Option("reset-free", help=f"Comma-separated training modes: {', '.join(TRAINING_MODE_NAMES)}."),
    seeds: str = typer.Option("0", help="Comma-separated seeds."),
    hidden: str = typer.Option("128", help="Comma-separated widths."),
    epochs: int = _same_as(TrainConfig, "epochs"),
    batch: int = _same_as(TrainConfig, "batch"),
    train_samples: Optional[int] = _same_as(TrainConfig, "train_samples"),
    val_samples: int = _same_as(TrainConfig, "val_samples"),
    test_steps: int = _same_as(TrainConfig, "test_steps"),
    out: Path = typer.Option(Path("runs/sweep"), "-o", "--out", help="Folder for the trials' checkpoints and logs; "
                                                                     "finished trials found here are reused."),
    results: Optional[Path] = typer.Option(None, help="Prefix of the result tables (.jsonl, .md); default OUT/sweep."),
    address: Optional[str] = typer.Option(None, help="Address of an existing Ray cluster (default: a local Ray "
                                                    "inside this command)."),
    cpus: int = typer.Option(1, min=1, max=1024, help="CPUs (torch threads) per trial."),
    engine: str = typer.Option("auto", help="ray, pool (local processes), or auto: ray when edgerf[sweep] is "
                                            "installed."),
    data: Optional[Path] = _same_as(TrainConfig, "data"),
    background: Optional[Path] = _same_as(TrainConfig, "background"),
) -> None:
    """Train a grid (families x losses x seeds x widths) as Ray Tune trials; resumable."""
    _need_host("sweep")
    from edgerf.sweep import SweepConfig, run_sweep
    from edgerf.train import TrainConfig

    def listed(text: str, kind=str, known=None):
        what = f" of {', '.join(known)}" if known else " of whole numbers" if kind is int else ""
        try:
            values = tuple(dict.fromkeys(kind(v.strip()) for v in text.split(",") if v.strip()))   # each once
        except ValueError:
            values = ()
        if not values or any(known is not None and v not in known for v in values):
            raise typer.BadParameter(f"{text!r}: expected a comma-separated list{what}")
        return values

    _refuse_overwrite(out, force=True, folder=True)       # finished trials are reused: a folder, not a file
    for table in (".jsonl", ".md"):                       # the tables come after hours of training: check now
        _refuse_overwrite(Path(results or out / "sweep").with_suffix(table), force=True)

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


@command()
def plot(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `edgerf train`, or a built-in name "
                                                "(default-gru, kws-gru)."),
    output: Path = typer.Option(..., "-o", "--output", help="Image to write: PNG, or SVG, PDF, JPEG by its suffix."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing image."),
    steps: int = typer.Option(600, min=1, help="Steps of the excerpt (at most the test stream's)."),
    seed: int = typer.Option(3, min=0, max=2 ** 32 - 1, help="Which test stream (seed)."),
    data: Optional[Path] = _same_as(TrainConfig, "data"),
    background: Optional[Path] = _same_as(TrainConfig, "background"),
) -> None:
    """Plot a stream excerpt: input features, the mask, per-step prediction (correct/wrong), no reset."""
    _need_host("plot")
    from edgerf.bench.render import plot_format, plot_stream_excerpt
    _refuse_overwrite(output, force)
    plot_format(output)
    from edgerf import checkpoint as ckpt_io
    from edgerf.models import checkpoint_path
    from edgerf.tasks import get_task
    from edgerf.train import predict

    ck = ckpt_io.load(checkpoint_path(checkpoint))
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
