"""``edgerf bench``: per-step latency and no-reset continual accuracy of every artifact
of one model, side by side with torch eager, on the same real unreset stream.

Protocol (in the spirit of MLPerf Tiny): warm-up, then ``windows`` windows of
``seconds`` each, every call timed; one intra-op thread unless told; the state of step
t feeds step t+1 (through ``edgerf.runtime.StepModel``, the public runtime). Torch
eager runs in the same process and every figure is also a ratio to it. Accuracy: one
long stream never reset; acc_f, acc_p, false alarms on noise, acc_p over the first
and last 10% of samples, drift and argmax agreement against the torch fp32 trajectory.

Where torch, the checkpoint or the dataset are missing (a device with only the
runtime extra), the evaluation bundle written by ``edgerf export`` supplies the stream
and the torch reference logits; the report says which reference was used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerf.runtime import bundle as bundle_io
from edgerf.bench.latency import Latency, measure_latency
from edgerf.bench.machine import machine_info
from edgerf.choices import DEVICES
from edgerf.configs import BenchConfig
from edgerf.data.source import differs
from edgerf.runtime.errors import ArtifactError, DataError, EdgerfError
from edgerf.runtime.targets import TARGETS as RUNTIME_TARGETS, choose as choose_target
from edgerf.runtime.manifest import ARTIFACT_SUFFIXES, is_int8, read as read_manifest, read_verified, verify_export
from edgerf.runtime.metrics import agreement, stream_metrics
from edgerf.runtime.progress import bar



@dataclass
class Target:
    """One row of the bench: an artifact (or torch) on one runtime target."""
    name: str                  # torch, onnx-fp32, onnx-int8, tflite-fp32, tflite-int8 (+ @target when chosen)
    path: Path
    precision: str = "fp32"
    on: str | None = None      # the runtime target (edgerf.runtime.targets) it runs on; None: torch
    result: dict = field(default_factory=dict)


@dataclass
class BenchRun:
    """What ``run_bench`` measured: the JSON-able report (bench.json) and, for plots and the
    arm64 comparison, the targets with their logits and the stream they ran on."""
    report: dict
    targets: list[Target]
    stream: object | None          # edgerf.data.Stream, or None with --no-accuracy


def artifact_kind(path: Path, manifest: dict | None = None) -> str:
    """``onnx-fp32``, ``tflite-int8``...: from the manifest when given (what the file is), else
    from the file's name (edgerf's names say it; the manifest check refuses a name that lies)."""
    runtime = {".onnx": "onnx", ".tflite": "tflite"}[path.suffix]
    int8 = manifest["artifact"]["precision"] != "fp32" if manifest else is_int8(path)
    return f"{runtime}-{'int8' if int8 else 'fp32'}"


def discover(artifacts: list[Path], ckpt: Path | None,
             allow_unverified: bool = False) -> tuple[Path | None, list[Path]]:
    """The artifacts to run: those given, or every artifact beside the checkpoint."""
    for a in artifacts:
        if not a.exists():
            raise ArtifactError(f"{a} does not exist.")
        if a.suffix not in ARTIFACT_SUFFIXES:
            raise ArtifactError(f"{a}: not a step model ({', '.join(ARTIFACT_SUFFIXES)}).")
    if not artifacts and ckpt is not None:
        if not ckpt.exists():
            raise ArtifactError(f"checkpoint {ckpt} does not exist.")
        order = {k: i for i, k in enumerate(("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"))}
        artifacts = sorted((p for p in ckpt.parent.glob(f"{ckpt.stem}.*")
                            if p.suffix in ARTIFACT_SUFFIXES and p.name.count(".") <= 2),
                           key=lambda p: order[artifact_kind(p)])
        if not artifacts:
            raise ArtifactError(f"no exported artifacts beside {ckpt}; run `edgerf export {ckpt} --int8` first.")
    if ckpt is None and artifacts:   # the checkpoint the manifest names, when it sits beside the artifact
        src = read_manifest(artifacts[0], allow_unverified).get("source", {}).get("checkpoint")
        if src and (artifacts[0].parent / src).exists():
            ckpt = artifacts[0].parent / src
    return ckpt, artifacts


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def _reference(manifest: dict, artifacts: list[Path], ckpt: Path | None, cfg: BenchConfig, log):
    """(stream, reference logits or None, torch model or None, description, data read).

    With the checkpoint and torch, a fresh test stream of the dataset (``--data`` when given:
    then a missing dataset is an error, never a silent switch to the bundle); else the
    evaluation bundle the export wrote."""
    model = None
    if ckpt is not None and _torch_available():
        from edgerf import checkpoint
        ck = checkpoint.load(ckpt)
        if ck.sha256 != manifest.get("source", {}).get("checkpoint_sha256"):
            raise ArtifactError(f"{ckpt} is not the checkpoint {artifacts[0].name} was exported from "
                                "(SHA-256 differs); pass the right --ckpt.")
        model = ck.model
    if not cfg.accuracy:
        return None, None, model, "accuracy skipped (--no-accuracy)", None
    if model is not None:
        try:
            from edgerf.tasks import EVAL_SEED, get_task
            task = get_task(manifest["frame"]).bind(cfg.data, cfg.background).with_gaps(cfg.gap_kind)
            stream = task.stream("test", task.samples_for_steps(cfg.steps), seed=EVAL_SEED).head(cfg.steps)
            data = task.provenance()
            other = differs(manifest.get("source", {}).get("train_data"), data)
            if other:
                log(f"note: this bench reads other data than the model was trained on: {other}")
                data["differs_from_training"] = other
            from edgerf.export.parity import torch_trajectory
            log(f"torch reference over {len(stream):,} test steps ...")
            return stream, torch_trajectory(model, stream.x)[0], model, \
                f"torch fp32 eager on a fresh {task.name} test stream ({len(stream):,} steps)", data
        except DataError as e:
            if cfg.data or cfg.background:
                raise
            log(f"dataset not found ({str(e).split('. ')[0]}); using the evaluation bundle")
    b_path = bundle_io.bundle_path(artifacts[0])
    if not b_path.exists():
        raise DataError("no reference for accuracy: torch/the checkpoint/the dataset are missing and there is "
                        f"no evaluation bundle ({b_path.name}) beside the artifacts. Copy the bundle that "
                        "`edgerf export` wrote, or pass --no-accuracy.")
    if cfg.gap_kind:
        raise DataError(f"--gap-kind {cfg.gap_kind} needs torch, the checkpoint and the dataset (the evaluation "
                        "bundle holds the training gaps only).")
    b = bundle_io.read(b_path)
    if b.meta.get("checkpoint_sha256") != manifest.get("source", {}).get("checkpoint_sha256"):
        raise ArtifactError(f"{b_path.name} was made for another checkpoint than {artifacts[0].name} (an "
                            "interrupted or mixed export?); its reference would be meaningless. Re-export, "
                            "or copy the artifacts and the bundle of one export together.")
    if b.reference_logits.shape[1] != len(manifest["model"]["classes"]) or \
            b.stream.x.shape[1] != manifest["inputs"]["x"]["shape"][1]:
        raise ArtifactError(f"{b_path.name} does not fit {artifacts[0].name} (frame or class count differs); "
                            "re-export.")
    stream = b.stream.head(min(cfg.steps, len(b.stream)))
    if cfg.steps > len(b.stream):
        log(f"the bundle holds {len(b.stream):,} steps; --steps {cfg.steps:,} capped to it")
    data = {"bundle": b_path.name, "made_from": manifest.get("source", {}).get("export_data")}
    return stream, b.reference_logits[:len(stream)], model, \
        f"evaluation bundle {b_path.name}: {b.meta.get('reference')} ({len(stream):,} steps)", data


def run_bench(artifacts: list[Path], ckpt: Path | None = None, cfg: BenchConfig = BenchConfig(),
              progress: bool = True, log=lambda s: None) -> BenchRun:
    if cfg.device not in DEVICES:
        raise EdgerfError(f"unknown device {cfg.device!r}; known: {', '.join(DEVICES)}")
    if cfg.device == "arm64":
        from edgerf.bench.arm64 import run_arm64
        return run_arm64(artifacts, ckpt, cfg, progress, log)
    ckpt, artifacts = discover(artifacts, ckpt, cfg.allow_unverified)
    if not artifacts:
        raise ArtifactError("nothing to benchmark: give artifacts, --ckpt, or neither for the built-in model.")
    manifests, integrity = _manifests(artifacts, cfg.allow_unverified)
    first = manifests[artifacts[0]]
    if cfg.levels and not first["frame"].get("period_s"):
        raise DataError("--levels sweeps speech level and SNR: it is for audio models.")
    stream, ref_logits, model, ref_desc, data = _reference(first, artifacts, ckpt, cfg, log)

    targets = [Target("torch", ckpt, "fp32")] if model is not None else []
    for a in artifacts:
        on = [t for t in cfg.targets if RUNTIME_TARGETS[t].suffix == a.suffix] if cfg.targets \
            else [choose_target(a.suffix).name]
        targets += [Target(artifact_kind(a, manifests[a]) + (f"@{t}" if cfg.targets else ""), a,
                           manifests[a]["artifact"]["precision"], choose_target(a.suffix, t).name) for t in on]
    if not any(t.on for t in targets):
        raise ArtifactError(f"none of --target {','.join(cfg.targets)} runs these artifacts "
                            f"({', '.join(sorted({a.suffix for a in artifacts}))}).")
    frames = stream.x if stream is not None else np.zeros((1, first["inputs"]["x"]["shape"][1]), np.float32)
    # with several --target, a pair that cannot run (TFLite Micro and a LIF a16w8 graph, say)
    # is reported as such and the others still run; a single named target still refuses
    skipped = []
    if len(cfg.targets) > 1:
        from edgerf.runtime import StepModel
        for tg in [t for t in targets if t.on]:
            try:
                StepModel.load(tg.path, allow_unverified=cfg.allow_unverified, target=tg.on)
            except ArtifactError as e:
                skipped.append({"target": tg.name, "file": tg.path.name, "precision": tg.precision, "why": str(e)})
                log(f"not run: {tg.name}: {e}")
                targets.remove(tg)
    total = len(targets) * (cfg.windows + (1 if stream is not None else 0))
    with bar("bench", total, progress) as pb:
        for tg in targets:
            step = (_torch_step(model, frames, cfg.threads) if tg.name == "torch"
                    else _runtime_step(tg.path, frames, cfg.threads, cfg.allow_unverified, tg.on))
            lat = measure_latency(step, cfg.windows, cfg.seconds, cfg.warmup_s, progress=pb.advance)
            tg.result = {"latency": lat, "size_bytes": tg.path.stat().st_size, "threads": cfg.threads}
            if stream is not None:
                tg.result["logits"] = _trajectory(tg, model, stream, cfg.threads, cfg.allow_unverified)
                tg.result["accuracy"] = _scores(tg.result["logits"], ref_logits, stream, first)
                pb.advance()
    if cfg.rss:
        from edgerf.bench.rss import measure
        for tg in targets:
            tg.result["peak_rss_mib"] = measure("torch" if tg.name == "torch" else "runtime", tg.path,
                                                allow_unverified=cfg.allow_unverified, target=tg.on)
    for tg in targets:
        tg.result["integrity"] = integrity.get(tg.path, "checkpoint digest verified")
    report = _report(targets, first, cfg, ref_desc, stream, data)
    report["skipped"] = skipped
    if cfg.levels:
        report["levels"] = _levels(artifacts[0], first, cfg, log)
    return BenchRun(report, targets, stream)


def _levels(artifact: Path, manifest: dict, cfg: BenchConfig, log) -> list[dict]:
    """--levels: the first artifact at other speech gains and SNRs (edgerf.bench.levels)."""
    from edgerf.bench.levels import sweep
    from edgerf.runtime import StepModel
    from edgerf.tasks import get_task
    task = get_task(manifest["frame"]).bind(cfg.data, cfg.background)
    model = StepModel.load(artifact, allow_unverified=cfg.allow_unverified)
    return sweep(model, task, min(cfg.steps, 20_000), artifact.name, log)


def _manifests(artifacts: list[Path], allow_unverified: bool = False) -> tuple[dict[Path, dict], dict[Path, str]]:
    """Each artifact's manifest and integrity, its export index checked, all from one checkpoint."""
    for a in artifacts:
        verify_export(a)
    read = {a: read_verified(a, allow_unverified) for a in artifacts}
    manifests = {a: m for a, (m, _) in read.items()}
    first = manifests[artifacts[0]]
    for a, m in manifests.items():
        if m.get("source", {}).get("checkpoint_sha256") != first.get("source", {}).get("checkpoint_sha256"):
            raise ArtifactError(f"{a.name} comes from another checkpoint than {artifacts[0].name}; "
                                "bench compares artifacts of one model.")
    return manifests, {a: why for a, (_, why) in read.items()}


def _torch_step(model, frames: np.ndarray, threads: int):
    """step(i): torch eager, batch 1, the state fed back (the reference every ratio is to)."""
    import torch
    torch.set_num_threads(threads)
    xt, state = torch.from_numpy(frames), [model.init_state(1)]

    def step(i):
        with torch.no_grad():
            _, state[0] = model.step(xt[i % len(xt)][None], state[0])
    return step


def _runtime_step(path: Path, frames: np.ndarray, threads: int, allow_unverified: bool = False,
                  target: str | None = None):
    """step(i): the artifact through the public runtime, as a device runs it."""
    from edgerf.runtime import StepModel
    rt = StepModel.load(path, threads=threads, allow_unverified=allow_unverified, target=target)
    return lambda i: rt.step(frames[i % len(frames)])


def _scores(logits: np.ndarray, ref_logits: np.ndarray, stream, manifest: dict) -> dict:
    """The accuracy figures, and for audio the keyword events as the field counts them."""
    decision = manifest["decision"]
    # per-step false alarms at the task's threshold (the paper's metric); events at the operating point
    out = accuracy_metrics(logits, ref_logits, stream, manifest["frame"].get("threshold", decision["threshold"]))
    if manifest["frame"].get("period_s"):
        from edgerf.runtime.metrics import keyword_metrics, softmax
        from edgerf.runtime.events import detect_events
        classes = list(manifest["model"]["classes"])
        events = detect_events(softmax(logits), classes, decision["threshold"], decision.get("window", 3))
        out["keywords"] = keyword_metrics(events, stream, classes, manifest["frame"]["period_s"])
    return out


def _trajectory(tg: Target, model, stream, threads: int, allow_unverified: bool = False) -> np.ndarray:
    if tg.name == "torch":
        from edgerf.export.parity import torch_trajectory
        return torch_trajectory(model, stream.x)[0]
    from edgerf.runtime import StepModel
    return StepModel.load(tg.path, threads=threads, allow_unverified=allow_unverified, target=tg.on).run(stream.x)


def accuracy_metrics(logits: np.ndarray, ref: np.ndarray, stream, threshold: float) -> dict:
    m = stream_metrics(logits, stream.labels, stream.mask, stream.ends, threshold)
    n = len(stream.ends)
    k = max(1, n // 10)
    pred = logits.argmax(-1)
    head, tail = stream.ends[:k], stream.ends[-k:]
    m["acc_p_first10"] = float((pred[head] == stream.labels[head]).mean()) if n else float("nan")
    m["acc_p_last10"] = float((pred[tail] == stream.labels[tail]).mean()) if n else float("nan")
    m["argmax_agreement"] = agreement(ref[stream.mask], logits[stream.mask])
    m["argmax_agreement_all"] = agreement(ref, logits)
    m["max_abs_logits_drift"] = float(np.abs(ref - logits).max())
    m["mean_abs_logits_drift"] = float(np.abs(ref - logits).mean())
    return m


def _report(targets: list[Target], manifest: dict, cfg: BenchConfig, ref_desc: str, stream, data) -> dict:
    period = manifest.get("frame", {}).get("period_s")
    torch_lat = next((t.result["latency"] for t in targets if t.name == "torch"), None)
    rows = []
    for t in targets:
        lat: Latency = t.result["latency"]
        row = {"target": t.name, "file": t.path.name if t.path else None, "precision": t.precision,
               "runs_on": t.on and f"{t.on}: {RUNTIME_TARGETS[t.on].interpreter}, {RUNTIME_TARGETS[t.on].kernels}",
               "timing": f"host-emulated ({RUNTIME_TARGETS[t.on].interpreter} on this host, not the device it "
                         "stands for)" if t.on and RUNTIME_TARGETS[t.on].host_emulated else "measured",
               "latency": lat.to_dict(), "steps_per_s": lat.steps_per_s, "size_bytes": t.result["size_bytes"],
               "threads": t.result["threads"], "peak_rss_mib": t.result.get("peak_rss_mib"),
               "integrity": t.result.get("integrity"),
               "real_time_factor": (lat.overall.median_us * 1e-6 / period) if period else None}
        if torch_lat is not None:
            row["vs_torch"] = {"median": lat.overall.median_us / torch_lat.overall.median_us,
                               "p99": lat.overall.p99_us / torch_lat.overall.p99_us}
        if "accuracy" in t.result:
            row["accuracy"] = t.result["accuracy"]
        rows.append(row)
    return {"format": "edgerf-bench/1", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "device": cfg.device, "emulated": False, "config": cfg.portable(), "machine": machine_info(),
            "model": manifest["model"] | {"classes": len(manifest["model"]["classes"])},
            "task": manifest["frame"].get("name"), "frame_period_s": period,
            "threshold": manifest["decision"]["threshold"],
            "reference": ref_desc, "data": data, "accuracy_steps": len(stream) if stream is not None else 0,
            "accuracy_samples": len(stream.ends) if stream is not None else 0,
            "targets": rows}
