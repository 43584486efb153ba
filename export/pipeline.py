"""``edgerf export``: checkpoint -> step graphs (fp32, int8) + manifests, parity-gated.

Everything is built in a staging folder inside the output directory and moved into
place only when every artifact passed its gate, so a failed export leaves the
output directory as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgerf.runtime import bundle, manifest
from edgerf.runtime.events import FILLER_CLASSES
from edgerf.runtime.atomic import clean_stale, temp_prefix, write_target
from edgerf.checkpoint import load as load_checkpoint, versions
from edgerf.configs import ExportConfig
from edgerf.data.source import differs
from edgerf.data.stream import join
from edgerf.runtime.errors import ArtifactError, Interrupted, ParityError
from edgerf.export import calibrate, parity, quantize
from edgerf.export.formats import FORMATS
from edgerf.runtime.metrics import stream_metrics
from edgerf.runtime.progress import bar
from edgerf.tasks import CALIBRATION_SEED, EVAL_SEED, PARITY_SEED, PLAN_CHECK_SEED, get_task


TUNED_PLAN = "int8"     # the plan --qat-epochs fine-tunes for (edgerf.export.qat mirrors its graph)
MAX_CONTEXTS = 16       # times a small val split is streamed for the int8 check (small_budget study)


@dataclass
class ArtifactReport:
    file: str
    precision: str
    size_bytes: int
    ops: dict
    parity: dict
    test: dict                            # acc_p, acc_f, false_alarm... on the unreset test stream
    microcontroller: dict | None = None   # TFLite Micro: runs?, arena and flash bytes, ops (.tflite only)


@dataclass
class ExportReport:
    checkpoint: str
    artifacts: list[ArtifactReport]
    plan: dict | None                     # the int8 precision plan and every rung tried
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _versions() -> dict:
    """What made an export: the training side's versions plus the exporters'."""
    import onnx
    import onnxruntime
    return {**versions(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _names(base: str, formats, int8: bool) -> list[str]:
    files = [f"{base}.bundle.npz"]
    for f in formats:
        for name in [manifest.artifact_name(base, FORMATS[f].suffix, q) for q in (False, True)[:1 + int8]]:
            files += [name, manifest.sidecar_path(name).name]
    return files


def output_files(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike | None, cfg: ExportConfig) -> list[Path]:
    """Every file an export of ``ckpt_path`` writes: artifacts, sidecars, bundle, then its index."""
    ckpt_path = Path(ckpt_path)
    out_dir = Path(out_dir) if out_dir else ckpt_path.parent
    base = cfg.name or ckpt_path.stem
    return [out_dir / n for n in _names(base, cfg.formats, cfg.int8)] + [manifest.index_path(out_dir, base)]


def export_checkpoint(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                      cfg: ExportConfig = ExportConfig(), log=lambda s: None, progress: bool = False) -> ExportReport:
    """Export ``ckpt_path`` per ``cfg``; ``log`` receives one line per stage result, and with
    ``progress`` each long stage (reference, calibration, parity, each int8 plan tried) shows
    a bar on stderr."""
    import torch
    t_start = time.perf_counter()
    # a step of a small recurrent model is a few tiny matmuls: beside another export on 2
    # cores, a keyword model's fp32 export took 10 s with one thread and had not finished
    # after 8 minutes with torch's default of one per core
    torch.set_num_threads(cfg.threads)
    ckpt_path = Path(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    out_dir = Path(out_dir) if out_dir else ckpt_path.parent
    base = cfg.name or ckpt_path.stem
    # a device or a directory where a file goes is refused now, before any work
    *targets, _index = [write_target(t) for t in output_files(ckpt_path, out_dir, cfg)]    # the index: last, apart
    clash = [str(t) for t in targets if t.exists()]
    if clash and not cfg.force:
        raise ArtifactError(f"{', '.join(clash)} already exist; pass --force to overwrite.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        removed = clean_stale(out_dir, manifest.STAGING_PREFIX.lstrip("."))
        if removed:
            log(f"removed {removed} staging folder(s) left by an interrupted export")
        stage = Path(tempfile.mkdtemp(prefix=temp_prefix(manifest.STAGING_PREFIX.lstrip(".")), dir=out_dir))
    except OSError as e:
        raise ArtifactError(f"cannot write to {out_dir}: {e.strerror}. Choose a writable directory.") from e

    committing = False         # from the old index's removal to the new index's writing
    try:
        report = _export(ckpt, ckpt_path, stage, base, cfg, log, _Stages(progress))
        # every gate passed: the old index goes first, the files move in, the new index
        # comes last, so a kill in between leaves a set that readers refuse, never one
        # they trust (edgerf.runtime.manifest.verify_export)
        files = {t.name: manifest.file_sha256(stage / t.name) for t in targets}
        committing = True
        manifest.index_path(out_dir, base).unlink(missing_ok=True)
        for t in targets:
            os.replace(stage / t.name, t)
        manifest.write_index(out_dir, base, files, ckpt.sha256)
        committing = False
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: the export to {out_dir} was cut short while its files moved in; the set "
                          "there has no index and every reader refuses it. Run the export again (with --force)."
                          if committing else f"interrupted: nothing was written to {out_dir}.") from None
    except OSError as e:
        if committing:
            raise ArtifactError(f"could not finish writing the export to {out_dir}: {e.strerror or e}. The set "
                                "there has no index now and every reader refuses it; fix the cause and run the "
                                "export again (with --force), which also cleans up.") from e
        raise ArtifactError(f"could not write the export to {out_dir}: {e.strerror or e}. "
                            "Nothing was changed; free some space or choose another directory.") from e
    finally:
        if not committing:      # a commit cut short keeps its staging folder: what readers refuse by, as after a kill
            shutil.rmtree(stage, ignore_errors=True)
    report.seconds = round(time.perf_counter() - t_start, 1)
    return report


class _Stages:
    """``run(label, total, fn, *args, **kwargs)`` calls ``fn(..., progress=advance)`` under a bar
    of ``total`` steps."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def run(self, label: str, total: int, fn, *args, **kwargs):
        with bar(label, total, self.enabled) as pb:
            return fn(*args, **kwargs, progress=pb.advance)


@dataclass
class _Run:
    """What every stage of one export shares: the model and its task (bound to the data the
    export reads), the staging folder, the parity stream with torch's trajectory on it, the
    calibration feeds and the manifest fields every artifact carries."""
    model: object
    task: object
    cfg: ExportConfig
    stage: Path
    base: str
    log: object
    stages: _Stages
    test: object = None                    # the unreset test stream of the parity gate
    ref: tuple = ()                        # torch's (logits, states) on it
    feeds: dict = field(default_factory=dict)
    common: dict = field(default_factory=dict)
    check: object = None                   # held-out val stream on which the int8 plan is chosen
    check_ref: tuple = ()
    int8_model: object = None              # with --qat-epochs: the copy fine-tuned for int8 ...
    int8_feeds: dict = field(default_factory=dict)   # ... its calibration feeds ...
    qat: dict | None = None                # ... and how it was tuned

    def common_for(self, plan: str) -> dict:
        """Manifest fields of a candidate: the full-int8 plan of a fine-tuned copy carries that
        copy's state ranges (the watchdog's reference)."""
        if plan != TUNED_PLAN or self.int8_model is None:
            return self.common
        return {**self.common, "state_ranges": calibrate.ranges(self.int8_feeds)}

    @property
    def names(self) -> list[str]:
        return list(self.model.state_names)

    def score(self, logits) -> dict:
        t = self.test
        return stream_metrics(logits, t.labels, t.mask, t.ends, self.task.threshold)

    def held_out(self):
        """The val stream and torch on it, made once (only an int8 export needs them). A val
        split too small to fill ``check_steps`` is streamed again (other order, other gaps) up
        to MAX_CONTEXTS times: each sample is then judged in several contexts."""
        if self.check is None:
            n = self.task.samples_for_steps(self.cfg.check_steps)
            first = self.task.stream("val", n, seed=PLAN_CHECK_SEED)
            contexts = min(MAX_CONTEXTS, max(1, round(self.cfg.check_steps / max(len(first), 1))))
            self.check = join([first] + [self.task.stream("val", n, seed=PLAN_CHECK_SEED + 1000 * k)
                                         for k in range(1, contexts)])
            self.check_ref = self.stages.run("torch on val", len(self.check), parity.torch_trajectory,
                                             self.model, self.check.x)
        return self.check, self.check_ref


def _export(ckpt, ckpt_path: Path, stage: Path, base: str, cfg: ExportConfig, log, stages: _Stages) -> ExportReport:
    run = _prepare(ckpt, ckpt_path, stage, base, cfg, log, stages)
    _write_bundle(run.model, run.task, ckpt, stage / f"{base}.bundle.npz", cfg)
    artifacts, plans = [], {}
    for fmt_name in cfg.formats:
        fmt = FORMATS[fmt_name]()
        fmt.prepare(run.model, run.feeds, stage)
        artifacts.append(_fp32_artifact(run, fmt, fmt_name))
        if cfg.int8:
            art, plans[fmt_name] = _int8_artifact(run, fmt, fmt_name)
            artifacts.append(art)
    return ExportReport(checkpoint=str(ckpt_path), artifacts=artifacts, plan=plans or None, seconds=0.0)


def _prepare(ckpt, ckpt_path: Path, stage: Path, base: str, cfg: ExportConfig, log, stages: _Stages) -> _Run:
    """Bind the data, run torch over the parity stream, calibrate, and gather the manifest fields."""
    model, task = ckpt.model, get_task(ckpt.task).bind(cfg.data, cfg.background)
    run = _Run(model, task, cfg, stage, base, log, stages)
    data = task.provenance()
    other = differs(ckpt.training.get("data"), data)
    if other:
        log(f"note: this export reads other data than the model was trained on: {other}")
        data["differs_from_training"] = other
    run.test = task.stream("test", task.samples_for_steps(cfg.parity_steps), seed=PARITY_SEED)
    log(f"torch reference over {len(run.test):,} test steps ...")
    run.ref = stages.run("torch reference", len(run.test), parity.torch_trajectory, model, run.test.x)
    # State ranges over a long unreset training stream: the int8 calibration, and in
    # every manifest the reference the runtime's watchdog checks the state against.
    log(f"calibrating on {cfg.calibration_steps:,} unreset training steps ...")
    run.feeds = stages.run("calibration", cfg.calibration_steps, calibrate.calibration_feeds, model, task,
                           steps=cfg.calibration_steps, seed=CALIBRATION_SEED)
    run.common = dict(model={"family": model.config.family, "hidden": model.config.hidden,
                             "layers": model.config.layers, "frontend": model.config.frontend,
                             "readout": model.config.readout},
                      classes=list(task.classes), input_size=model.config.input_size, state_names=run.names,
                      state_sizes=list(model.state_sizes()), frame=ckpt.task,
                      threshold=ckpt.decision["threshold"] if ckpt.decision else task.threshold,
                      operating_point=ckpt.decision,
                      keywords=[c for c in task.classes if c not in FILLER_CLASSES],
                      source={"checkpoint": ckpt_path.name, "checkpoint_sha256": ckpt.sha256,
                              "train_command": ckpt.training.get("command", ""),
                              "train_data": ckpt.training.get("data"), "export_data": data,
                              "test": ckpt.results.get("test", [])},
                      versions=_versions(), state_ranges=calibrate.ranges(run.feeds))
    if cfg.int8 and cfg.qat_epochs:
        _fine_tune(run, ckpt)
    return run


def _fine_tune(run: _Run, ckpt) -> None:
    """--qat-epochs: a copy of the model fine-tuned through its full-int8 twin (edgerf.export.qat),
    then calibrated like the original; only the int8 artifacts are built from it."""
    from edgerf.export import qat
    cfg, t0 = run.cfg, time.perf_counter()
    run.log(f"fine-tuning a copy for int8: {cfg.qat_epochs} epoch(s), lr {cfg.qat_lr:g} ...")
    run.int8_model, run.int8_feeds, history = qat.fine_tune(
        run.model, run.task, ckpt.training.get("config", {}), cfg.qat_epochs, cfg.qat_lr, cfg.qat_samples,
        cfg.calibration_steps, progress=run.stages.enabled, log=run.log)
    run.qat = {"epochs": cfg.qat_epochs, "lr": cfg.qat_lr, "samples": cfg.qat_samples, "history": history,
               "seconds": round(time.perf_counter() - t0, 1)}


def _fp32_artifact(run: _Run, fmt, fmt_name: str) -> ArtifactReport:
    """The fp32 graph, gated against torch over the parity stream: a divergence writes nothing."""
    path = run.stage / manifest.artifact_name(run.base, fmt.suffix)
    fmt.build("fp32", path)
    logits, states = _closed_loop(run, _candidate(run, fmt, path, "fp32"), run.test.x, f"{fmt_name} fp32 parity")
    gate = _gate(*run.ref, logits, states, run.names, run.test.mask, run.cfg)
    run.log(f"{fmt_name} fp32 parity: {gate.summary()}")
    if not gate.passed:
        d = gate.first_divergence or {}
        raise ParityError(f"the fp32 {fmt_name} graph diverged from torch: {d.get('tensor', 'argmax')} first "
                          f"left tolerance at step {d.get('step', '?')} (|d| = {d.get('error', float('nan')):.3g}); "
                          f"{gate.summary()}. Nothing was written.")
    m = manifest.make(artifact=path.name, runtime=fmt.runtime, precision="fp32", plan={"plan": "fp32"}, **run.common)
    art = _finish(fmt, path, m, gate, run.score(logits), run.log, run.test.x)
    art.test["reference"] = run.score(run.ref[0])
    return art


def _int8_artifact(run: _Run, fmt, fmt_name: str) -> tuple[ArtifactReport, dict]:
    """The cheapest precision plan within budget (each runtime climbs the whole ladder: their
    integer kernels round differently, so one may keep full int8 where the other needs a
    safer rung), with its drift from torch on the parity stream."""
    qfmt = _int8_format(run, fmt, fmt_name)
    chosen, plan_report = _choose_plan(run, fmt, qfmt, fmt_name)
    plan = plan_report["plan"]
    if plan != TUNED_PLAN:
        qfmt = fmt                           # every other rung is the original model's
    path = run.stage / manifest.artifact_name(run.base, fmt.suffix, int8=True)
    os.replace(chosen, path)
    logits, states = _closed_loop(run, _candidate(run, qfmt, path, plan), run.test.x, f"{fmt_name} int8 drift")
    drift = parity.compare(*run.ref, logits, states, run.names, atol=np.inf, min_agreement=0.0, mask=run.test.mask)
    run.log(f"{fmt_name} int8 ({plan}) drift: {drift.summary()}")
    q = qfmt.io_quant(plan, path, run.names) if plan != "fp32" else {"states": {}, "io": {}}
    m = manifest.make(artifact=path.name, runtime=fmt.runtime, precision=plan, plan=plan_report,
                      state_quant=q["states"], io_quant=q["io"], **run.common_for(plan))
    row = next((t for t in plan_report["tried"] if t["plan"] == plan), {})
    m["targets"] = {n: _on_target(n, plan, r) for n, r in row.get("targets", {}).items()}
    return _finish(qfmt, path, m, drift, run.score(logits), run.log, run.test.x), plan_report


def _on_target(name: str, plan: str, r: dict) -> dict:
    """What the manifest says of the chosen plan on one target it was judged on."""
    from edgerf.runtime.targets import TARGETS
    if not r.get("runs"):
        return {"plan": plan, "within_budget": False, "fallback": "fp32", "summary": f"fallback fp32: {r['verdict']}"}
    d = r["acc_p_drop"]
    out = {"plan": plan, "within_budget": r["within_budget"], "acc_p": r["acc_p"], "acc_p_fp32": r["acc_p_fp32"],
           "acc_p_drop": d["drop"], "acc_p_drop_ci95": d["ci95"], "detectable_drop": d["power"]["detectable_drop"],
           "samples": d["samples"], "false_alarm_rise": r["false_alarm"] - r["false_alarm_fp32"],
           "decision_agreement": d["decision_agreement"], "frame_agreement": r["argmax_agreement"],
           "us_step": r["us_step"], "us_step_fp32": r["us_step_fp32"], "faster_than_fp32": r["us_step"] < r["us_step_fp32"]}
    if "fallback" in r:
        out["fallback"] = "fp32"
    out["summary"] = (("fallback fp32 (over budget here): " if "fallback" in r else f"{plan} within budget: ")
                      + f"acc_p {d['drop'] * 100:+.2f} pt vs fp32 (95% CI [{d['ci95'][0] * 100:+.2f}, "
                      f"{d['ci95'][1] * 100:+.2f}], detects {d['power']['detectable_drop'] * 100:.2f} pt), false alarms "
                      f"{out['false_alarm_rise'] * 100:+.3f} pt, frames agree {r['argmax_agreement']:.2%}; "
                      f"{r['us_step']:.1f} vs fp32 {r['us_step_fp32']:.1f} us/step on the exporting machine"
                      f"{' (host-emulated)' if TARGETS[name].host_emulated else ''}, "
                      f"{'faster' if out['faster_than_fp32'] else 'not faster'} than fp32")
    out["timing"] = "host-emulated" if TARGETS[name].host_emulated else "measured"
    return out


def _int8_format(run: _Run, fmt, fmt_name: str):
    """The format that builds the full-int8 rung: ``fmt`` itself, or with --qat-epochs one
    prepared from the fine-tuned copy."""
    if run.int8_model is None:
        return fmt
    folder = run.stage / "fine-tuned"
    folder.mkdir(exist_ok=True)
    qfmt = FORMATS[fmt_name]()
    qfmt.prepare(run.int8_model, run.int8_feeds, folder)
    return qfmt


def _write_bundle(model, task, ckpt, path: Path, cfg: ExportConfig) -> None:
    """A test stream (other seed than the parity stream) and torch's logits on it."""
    stream = task.stream("test", task.samples_for_steps(cfg.bundle_steps), seed=EVAL_SEED)
    stream = stream.head(cfg.bundle_steps)
    stream = type(stream)(bundle.round_frames(stream.x), stream.labels, stream.mask, stream.starts, stream.ends)
    ref_logits, _ = parity.torch_trajectory(model, stream.x)
    bundle.write(path, stream, ref_logits, {
        "task": ckpt.task, "checkpoint_sha256": ckpt.sha256, "reference": "torch fp32 eager, batch 1, state fed back",
        "split": "test", "seed": EVAL_SEED, "steps": len(stream)})


def _gate(ref_logits, ref_states, logits, states, names, mask, cfg: ExportConfig) -> parity.Parity:
    """fp32 gate: per tensor |d| <= atol + rtol * max|ref| (fp32 rounding scales with the
    largest values a tensor carries), and argmax agreement >= 99.9% on informative steps."""
    tols = [cfg.parity_atol + cfg.parity_rtol * float(np.abs(r).max()) for r in (ref_logits, *ref_states)]
    return parity.compare(ref_logits, ref_states, logits, states, names, tols, 0.999, mask)


def _judged_on(run: _Run, fmt) -> list[str]:
    """The targets the int8 rungs of ``fmt`` are judged on: those of --targets that run the
    format, else every installed one, one of each set measured bit-identical
    (``edgerf.runtime.targets.representatives``). The first is the format's default."""
    from edgerf.runtime import targets
    named = [t for t in run.cfg.targets if targets.TARGETS[t].suffix == fmt.suffix]
    if named:
        return named
    default = targets.choose(fmt.suffix).name
    return [default] + [t for t in targets.representatives(fmt.suffix) if t != default]


def _choose_plan(run: _Run, fmt, qfmt, fmt_name: str) -> tuple[Path, dict]:
    """Try the precision rungs from cheapest to safest on a held-out stream, each judged against
    the original fp32 model on every target of ``_judged_on``; keep the first within budget on
    all of them. If none is, keep the first within budget on the default target, and every
    target where it is not is told to run the fp32 graph (with the measured reason); if none is
    even there, the fp32 graph. The full-int8 rung is built by ``qfmt`` (the fine-tuned copy,
    if any: it was tuned for that graph alone), the others by ``fmt``."""
    check, (ref_logits, _) = run.held_out()
    ref = stream_metrics(ref_logits, check.labels, check.mask, check.ends, run.task.threshold)
    on = _judged_on(run, fmt)
    fp32_path = run.stage / manifest.artifact_name(run.base, fmt.suffix)
    fp32 = {t: _candidate(run, fmt, fp32_path, "fp32", t) for t in on}
    base = {"budget": asdict(run.cfg.budget), "check_steps": len(check), "judged_on": on,
            **({"qat": run.qat} if run.qat else {})}
    tried, on_default = [], None
    for plan in quantize.PLANS:
        path = run.stage / f"{run.base}.{plan}.candidate{fmt.suffix}"
        t = _try_plan(run, qfmt if plan == TUNED_PLAN else fmt, fmt_name, plan, path, ref, fp32, on)
        tried.append(t)
        if t["within_budget"]:
            return path, {"plan": plan, "why": _why(run, plan, t, len(check), on), "tried": tried, **base}
        if on_default is None and t.get("targets", {}).get(on[0], {}).get("within_budget"):
            on_default = (plan, path, t)
    if on_default is not None:
        plan, path, t = on_default
        over = [n for n, r in t["targets"].items() if not r.get("within_budget")]
        why = (_why(run, plan, t, len(check), on[:1]) + f"; no integer plan met the budget on {', '.join(over)}: "
               "there, run the fp32 graph")
        for n in over:
            t["targets"][n]["fallback"] = f"fp32: {t['targets'][n].get('verdict', 'over budget')}"
        run.log(f"  {fmt_name}: {why}")
        return path, {"plan": plan, "why": why, "tried": tried, "fallback": {n: "fp32" for n in over}, **base}
    path = run.stage / f"{run.base}.fp32.candidate{fmt.suffix}"
    fmt.build("fp32", path)
    why = ("no integer plan met the budget on the held-out stream (closed-loop state error compounds); "
           "the '.int8' artifact is kept in float")
    run.log(f"  {fmt_name}: {why}")
    return path, {"plan": "fp32", "why": why, "tried": tried, **base}


def _why(run: _Run, plan: str, t: dict, steps: int, on: list[str]) -> str:
    """Why ``plan`` was kept, in the figures of its check."""
    d = t["acc_p_drop"]
    seen = f", each in {d['contexts']:g} contexts on average" if d["contexts"] > 1 else ""
    why = (f"{plan} is the cheapest precision within budget on {', '.join(on)} over {steps:,} held-out val steps "
           f"({d['samples']:,} samples{seen}; the check detects drops of {d['power']['detectable_drop'] * 100:.2f} "
           "pt and more)")
    if run.qat and plan == TUNED_PLAN:
        why += f", after {run.qat['epochs']} epoch(s) of int8 fine-tuning"
    slower = [n for n, r in t["targets"].items() if n in on and r.get("us_step", 0) > r.get("us_step_fp32", np.inf)]
    if slower:                 # smaller, but not faster there: say so
        why += (f"; note: on {', '.join(slower)} on this machine it runs slower than fp32 ("
                + "; ".join(f"{n} {t['targets'][n]['us_step']:.1f} vs {t['targets'][n]['us_step_fp32']:.1f} us per "
                            "step" for n in slower) + ", median): int8 pays in size there, not speed")
    return why


def _try_plan(run: _Run, fmt, fmt_name: str, plan: str, path: Path, ref: dict, fp32: dict,
              on: list[str]) -> dict:
    """One rung: build it, run it closed loop over the held-out stream on each target, judge
    it by the budget on each, and time it against ``fp32`` (the fp32 graph loaded for each
    target). The top-level figures are the default target's."""
    check, (ref_logits, ref_states) = run.held_out()
    try:
        fmt.build(plan, path)
    except NotImplementedError as e:
        run.log(f"  {fmt_name} plan {plan:10s}: not available ({e})")
        return {"plan": plan, "error": str(e), "within_budget": False}
    per = {}
    for target in on:
        why = _cannot_run(path, target)
        if why is None:
            try:
                candidate = _candidate(run, fmt, path, plan, target)
                logits, states = _closed_loop(run, candidate, check.x, f"{fmt_name} plan {plan} on {target}")
                us, us_fp32 = _us_per_step((candidate, fp32[target]), check.x)
            except (ArtifactError, RuntimeError) as e:     # refused, or the interpreter failed mid-run
                why = str(e).splitlines()[0]
        if why is not None:
            run.log(f"  {fmt_name} plan {plan:10s} on {target}: does not run ({why})")
            per[target] = {"runs": False, "within_budget": False, "verdict": f"does not run: {why}"}
            continue
        p = parity.compare(ref_logits, ref_states, logits, states, run.names, atol=np.inf, min_agreement=0.0,
                           mask=check.mask)
        got = stream_metrics(logits, check.labels, check.mask, check.ends, run.task.threshold)
        paired = quantize.paired_acc_p_drop(ref_logits[check.ends].argmax(-1), logits[check.ends].argmax(-1),
                                            check.labels[check.ends], check.ids)
        paired["power"] = run.cfg.budget.power(paired["se_null"], paired["samples"])
        ok = run.cfg.budget.judge(ref, got, p.argmax_agreement, paired)
        lo, hi = paired["ci95"]
        verdict = (f"acc_p {got['acc_p']:.4f} vs fp32 {ref['acc_p']:.4f} (drop {paired['drop'] * 100:+.2f} pt, 95% CI "
                   f"[{lo * 100:+.2f}, {hi * 100:+.2f}] over {paired['samples']:,} samples x {paired['contexts']:g} "
                   f"contexts; detects {paired['power']['detectable_drop'] * 100:.2f} pt), false alarms "
                   f"{got['false_alarm']:.3%} vs {ref['false_alarm']:.3%}, decisions agree "
                   f"{paired['decision_agreement']:.2%}, frames {p.argmax_agreement:.2%}, {us:.1f} vs fp32 "
                   f"{us_fp32:.1f} us/step -> {'kept' if ok else 'over budget'}")
        run.log(f"  {fmt_name} plan {plan:10s} on {target}: {verdict}")
        per[target] = {"runs": True, "acc_p": got["acc_p"], "acc_p_fp32": ref["acc_p"], "acc_p_drop": paired,
                       "false_alarm": got["false_alarm"], "false_alarm_fp32": ref["false_alarm"],
                       "argmax_agreement": p.argmax_agreement, "max_abs_state": p.max_abs_state,
                       "rms_state": p.rms_state, "max_abs_logits": p.max_abs_logits, "within_budget": ok,
                       "us_step": round(us, 2), "us_step_fp32": round(us_fp32, 2), "verdict": verdict}
    first = per[on[0]]
    if not first["runs"]:
        return {"plan": plan, "error": first["verdict"], "within_budget": False, "targets": per}
    return {"plan": plan, **{k: v for k, v in first.items() if k not in ("runs", "verdict", "us_step", "us_step_fp32")},
            "closed_loop_us": first["us_step"], "closed_loop_us_fp32": first["us_step_fp32"],
            "within_budget": all(r["within_budget"] for r in per.values()), "targets": per}


SPEED_STEPS = 3_000    # closed-loop steps that time each plan against the fp32 graph (median)
SPEED_BLOCK = 100      # steps of one graph before the other takes its turn


def _cannot_run(path: Path, target: str) -> str | None:
    """Why ``target`` cannot run the graph at ``path`` at all (TFLite Micro names the op and
    type it lacks), or None."""
    if target != "tflm":
        return None
    from edgerf.runtime.backends import tflm_figures
    mcu = tflm_figures(path)
    return None if mcu["runs"] is not False else f"TFLite Micro: {mcu['why']}"


def _candidate(run: _Run, fmt, path: Path, plan: str, target: str | None = None):
    """A graph of this export as the device will run it: through ``StepModel`` (the runtime's
    backend and watchdog) with the manifest it is to carry, on ``target`` (default: the
    format's default)."""
    from edgerf.runtime.model import StepModel
    m = manifest.make(artifact=path.name, runtime=fmt.runtime, precision=plan, plan={"plan": plan},
                      **run.common_for(plan))
    return StepModel.for_export(path, m, target=target)


def _closed_loop(run: _Run, model, x, label: str):
    """Logits [T, C] and the state trajectories of a candidate over frames ``x``, state fed back."""
    logits, states = run.stages.run(label, len(x), model.run, x, states=True)
    if model.health["state_restores"]:
        run.log(f"  {label}: the watchdog restored the state {model.health['state_restores']} time(s)")
    return logits, states


def _us_per_step(models, x) -> list[float]:
    """Median time of one ``StepModel.step`` of each of ``models`` (frame in, state fed back,
    logits out) over the first SPEED_STEPS frames, on this machine. The models take turns in
    blocks of SPEED_BLOCK frames, so a change in the machine's load while they are timed falls
    on each alike: the name a built-in resolves to rests on which of two is faster."""
    import time
    times = [[] for _ in models]
    for b in range(0, min(len(x), SPEED_STEPS), SPEED_BLOCK):
        for model, spent in zip(models, times):
            for frame in x[b:min(b + SPEED_BLOCK, SPEED_STEPS)]:
                t0 = time.perf_counter_ns()
                model.step(frame)
                spent.append(time.perf_counter_ns() - t0)
    return [float(np.median(t)) / 1e3 for t in times]


# Steps of the parity stream on which a TFLite artifact is also run by the numpy backend
# (numpy alone: the runtime of boards without an interpreter wheel) and compared.
NUMPY_CHECK_STEPS = 2_000


def _on_numpy(path: Path, m: dict, frames: np.ndarray, mcu: dict) -> dict:
    """How the numpy backend runs a TFLite artifact: refused (with why), or its closed-loop
    logits against TFLite Micro's (int8: bit for bit) or LiteRT's reference kernels (fp32)."""
    from edgerf.runtime import StepModel
    from edgerf.runtime.errors import ArtifactError
    try:
        mine = StepModel.load(path, target="numpy").run(frames)
    except ArtifactError as e:
        return {"runs": False, "summary": f"refused: {e}"}
    ref_target = "tflm" if mcu.get("runs") else "litert-ref"
    ref = StepModel.load(path, target=ref_target).run(frames)
    exact = bool(np.array_equal(mine, ref))
    agree = float(np.mean(mine.argmax(1) == ref.argmax(1)))
    out = {"runs": True, "steps": len(frames), "compared_with": ref_target, "bit_identical": exact,
           "argmax_agreement": agree, "max_abs_logits_diff": float(np.abs(mine - ref).max())}
    out["summary"] = (f"{len(frames):,} closed-loop steps {'bit-identical to' if exact else 'vs'} {ref_target}"
                      + ("" if exact else f" (argmax agreement {agree:.4%}, max |d logits| "
                                          f"{out['max_abs_logits_diff']:.3g})"))
    return out


# The graph's probabilities output against the softmax of its own logits: float SOFTMAX
# kernels and numpy's agree to a few float32 ulps (2.4e-7 measured on every target).
PROBS_ATOL = 1e-5


def _probs_check(path: Path, frames: np.ndarray) -> dict:
    """The artifact's ``probs`` output, on its default target, against the softmax of the
    logits of the same run: an output that is not its logits' softmax fails the export."""
    from edgerf.runtime import StepModel
    from edgerf.runtime.metrics import softmax
    probs, _ = StepModel.load(path).step_many(frames, probs=True)
    logits, _ = StepModel.load(path).step_many(frames)
    err = float(np.abs(probs - softmax(logits)).max()) if len(frames) else 0.0
    if not err <= PROBS_ATOL:                # NaN fails too
        raise ParityError(f"{path.name}: its probabilities output is not the softmax of its logits (max |d| "
                          f"{err:.3g} over {len(frames):,} steps, allowed {PROBS_ATOL}). Nothing was written.")
    return {"steps": len(frames), "max_abs_diff": err}


def _finish(fmt, path: Path, m: dict, gate: parity.Parity, test: dict, log=lambda s: None,
            frames: np.ndarray | None = None) -> ArtifactReport:
    """Embed the manifest (with the parity figures), rewrite the artifact, write the sidecar
    (with what only reports: for TFLite, what TFLite Micro needs to run it, and how the numpy
    backend's run of it compares with TFLite Micro's)."""
    m["parity"] = gate.to_dict()
    fmt.embed(path, m)
    manifest.seal(path)               # the embedded contract's digest: graph and contract, one authority
    m["artifact"]["sha256"] = manifest.file_sha256(path)
    mcu = None
    if fmt.runtime == "tflite":
        from edgerf.runtime.backends import tflm_figures
        mcu = m["microcontroller"] = tflm_figures(path)
        log(f"  {path.name} on TFLite Micro: " + (
            f"runs; arena {mcu['arena_bytes']:,} bytes (64-bit host), flash {mcu['flash_bytes']:,} bytes"
            if mcu["runs"] else f"NOT CHECKED: {mcu['why']}" if mcu["runs"] is None else f"DOES NOT RUN: {mcu['why']}"))
        if frames is not None:
            check = _on_numpy(path, m, frames[:NUMPY_CHECK_STEPS], mcu)
            m.setdefault("targets", {})
            m["targets"]["numpy"] = {**m["targets"].get("numpy", {}), **check,
                                     "summary": "; ".join(filter(None, [m["targets"].get("numpy", {}).get("summary"),
                                                                        check["summary"]]))}
            log(f"  {path.name} on the numpy backend: {check['summary']}")
    if frames is not None:
        m["probs_check"] = _probs_check(path, frames[:NUMPY_CHECK_STEPS])
        log(f"  {path.name} probabilities output: the softmax of its logits within "
            f"{m['probs_check']['max_abs_diff']:.1e} over {m['probs_check']['steps']:,} steps")
    manifest.write(path, m)
    return ArtifactReport(file=path.name, precision=m["artifact"]["precision"], size_bytes=path.stat().st_size,
                          ops=fmt.ops(path), parity=gate.to_dict(), test=test, microcontroller=mcu)
