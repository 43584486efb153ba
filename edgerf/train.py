"""Training on unreset streams, and evaluation of a model on one long test stream.

Training runs ``batch`` parallel streams, each never reset, cut into truncated-BPTT
chunks of ``bptt`` steps; the state is carried (detached) from one chunk to the
next and from one epoch to the next, so the model sees what a device sees: an
endless stream. The periodic-reset baseline uses the same loop with the state
zeroed at every sample start.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable

import numpy as np
import torch

from edgerf.cells import ModelConfig, RecurrentClassifier
from edgerf.checkpoint import Checkpoint, versions
from edgerf.data import Stream
from edgerf.configs import TrainConfig
from edgerf.distributed import Dist, setup, teardown
from edgerf.loss import TRAINING_MODES, stream_loss
from edgerf.runtime.metrics import (det_curve, keyword_metrics, operating_point, rate_per_hour, softmax,
                                    stream_metrics)
from edgerf.runtime.progress import bar
from edgerf.tasks import get_task


def model_config(cfg: TrainConfig, task) -> ModelConfig:
    return ModelConfig(family=cfg.model, input_size=task.features, hidden=cfg.hidden,
                       layers=cfg.layers, classes=len(task.classes), frontend=cfg.frontend,
                       readout=cfg.readout)


def cosine_schedule(opt, total_updates: int):
    """The learning rate: the peak, decayed to 0 along a half cosine over the run."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i / total_updates, 1.0))))


def _training_samples(task, cfg: TrainConfig, dist: Dist):
    """The training split (or its first --train-samples), checked to fill the lanes."""
    arrays = task.split_arrays("train")
    if cfg.train_samples is not None:
        arrays = tuple(a[: cfg.train_samples] for a in arrays)
    n = len(arrays[0])
    if n < cfg.batch:
        raise ValueError(f"{n} training samples cannot fill {cfg.batch} parallel streams; "
                         "lower --batch or raise --train-samples")
    if cfg.batch % dist.world:
        raise ValueError(f"--batch {cfg.batch} does not divide over {dist.world} processes; make it a multiple")
    return arrays


def _epoch_lanes(task, arrays, batch: int, mine: list[int], rng) -> list[Stream]:
    """This epoch's unreset training streams of this rank: the samples dealt over ``batch``
    lanes in a fresh order, each lane its own stream with new gaps and augmentation. Every
    rank draws every lane's seed, so the lanes are those of a single process."""
    n = len(arrays[0])
    per_lane = n // batch
    order = rng.permutation(n)
    parts = np.array_split(order[: per_lane * batch], batch)
    seeds = [int(rng.integers(2**31)) for _ in parts]
    return [task.stream("train", None, seed=seeds[k], arrays=(arrays[0][parts[k]], arrays[1][parts[k]]), augment=True)
            for k in mine]


def _epoch(net, model, opt, sched, b: dict, n_chunks: int, state, mode, cfg: TrainConfig, pb):
    """One pass over the stacked lanes ``b`` in ``n_chunks`` truncated-BPTT chunks, the state
    carried (detached) from chunk to chunk. Returns (state, summed chunk loss, informative
    hits, informative steps)."""
    t0, loss_sum, hit, seen = time.perf_counter(), 0.0, 0, 0
    model.train()
    for c in range(n_chunks):
        sl = slice(c * cfg.bptt, (c + 1) * cfg.bptt)
        logits, state = net(b["x"][:, sl], state, b["resets"][:, sl] if mode.oracle_reset else None)
        state = tuple(s.detach() for s in state)
        loss = stream_loss(logits, b["labels"][:, sl], b["mask"][:, sl], mode.loss,
                           b["grace"][:, sl] if "grace" in b else None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        sched.step()
        m = b["mask"][:, sl]
        hit += int((logits.argmax(-1)[m] == b["labels"][:, sl][m]).sum())
        seen += int(m.sum())
        loss_sum += loss.item()
        steps = (c + 1) * cfg.bptt * cfg.batch
        pb.advance(cfg.bptt * cfg.batch, loss=loss_sum / (c + 1), acc=hit / max(seen, 1),
                   rate=steps / (time.perf_counter() - t0))
    return state, loss_sum, hit, seen


def _test(model, task, cfg: TrainConfig, train_seconds: float, log,
          threshold: float | None = None) -> tuple[Stream, list[dict]]:
    """The final numbers: one long unreset test stream (and, for audio, every distinct second
    of the test background, up to --background-hours); keyword events at ``threshold``
    (the operating point), else the task's."""
    test = task.stream("test", task.samples_for_steps(cfg.test_steps), seed=cfg.seed + 2)
    base = {"task": task.name, "model": cfg.model, "loss": cfg.loss, "hidden": cfg.hidden,
            "epochs": cfg.epochs, "seed": cfg.seed, "train_seconds": round(train_seconds, 1)}
    if getattr(task, "stack", 1) != 1:
        base["frame_stack"] = task.stack
    background = task.background_stream("test", cfg.background_hours * 3600, seed=cfg.seed + 3) \
        if task.period_s and cfg.background_hours > 0 else None
    records = [{**base, **r} for r in evaluation_records(model, task, test, cfg.loss, background, threshold)]
    for r in records:
        log(f"test ({r['eval']}, {r['steps']:,} steps): acc_p {r['acc_p']:.4f}  acc_f {r['acc_f']:.4f}  "
            f"false_alarm {r['false_alarm']:.4f}  noise_conf {r['noise_conf']:.3f}")
        if "background_fa" in r:
            bg, un = r["background_fa"], r["unknown_fa"]
            log(f"  keywords at threshold {r['threshold']:.2f}: {r['hits']} hits, {r['misses']} misses, "
                f"{r['false_accepts']} false accepts in the stream; background: {bg['false_accepts']} false "
                f"accepts in {bg['seconds']:.0f} s of distinct audio ({bg['per_hour']:.1f}/h, 95% upper bound "
                f"{bg['per_hour_upper95']:.0f}/h); non-keyword speech: {un['false_accepts']} in {un['seconds']:.0f} s "
                f"(upper bound {un['per_hour_upper95']:.0f}/h)")
    return test, records


# The operating point (the decision threshold a keyword model ships): chosen on the
# validation split, never the test split: the fewest missed keywords among thresholds whose
# false accepts (every val clip in an unreset stream, plus every distinct second of val
# background) stay at or under one per OP_KEYWORDS_PER_FALSE_ACCEPT keywords.
OP_KEYWORDS_PER_FALSE_ACCEPT = 100
OP_THRESHOLDS = tuple(float(t) for t in np.round(np.linspace(0.5, 0.99, 50), 3))


def choose_operating_point(model, task, seed: int, log=lambda s: None) -> dict:
    """The operating point of an audio model on its validation split (see OP_*)."""
    from edgerf.runtime.events import FILLER_CLASSES, detect_events
    classes = list(task.classes)
    keywords = [c for c in classes if c not in FILLER_CLASSES]
    val = task.stream("val", None, seed=seed)
    bg = task.background_stream("val", None, seed=seed)
    probs, bg_probs = softmax(predict(model, val)), softmax(predict(model, bg))
    rows = []
    for thr in OP_THRESHOLDS:
        km = keyword_metrics(detect_events(probs, classes, thr), val, classes, task.period_s)
        fa_bg = len(detect_events(bg_probs, classes, thr, keywords=keywords))
        rows.append({"threshold": thr, "keywords": km["keywords"], "misses": km["misses"],
                     "false_accepts": km["false_accepts"] + fa_bg})
    ok = [r for r in rows if r["false_accepts"] * OP_KEYWORDS_PER_FALSE_ACCEPT <= r["keywords"]]
    best = min(ok, key=lambda r: (r["misses"], -r["threshold"])) if ok else rows[-1]
    op = {**best, "chosen_on": "val",
          "rule": f"fewest misses with at most 1 false accept per {OP_KEYWORDS_PER_FALSE_ACCEPT} keywords",
          "met": bool(ok), "val_stream_s": round(len(val) * task.period_s, 1),
          "val_background_s": round(len(bg) * task.period_s, 1)}
    log(f"operating point (val): threshold {op['threshold']:.2f}: {op['misses']} of {op['keywords']} keywords "
        f"missed, {op['false_accepts']} false accepts over {op['val_stream_s']:.0f} s of val stream and "
        f"{op['val_background_s']:.0f} s of val background" + ("" if ok else " (no threshold met the rule)"))
    return op


def _batch(streams: list[Stream], reset: bool, L: int, device: str, grace: int = 0) -> dict[str, torch.Tensor]:
    """Stack lanes [B, L, ...], cut to ``L`` steps (the shortest lane over every rank)."""
    out = {
        "x": torch.from_numpy(np.stack([s.x[:L] for s in streams])),
        "labels": torch.from_numpy(np.stack([s.labels[:L] for s in streams])),
        "mask": torch.from_numpy(np.stack([s.mask[:L] for s in streams])),
    }
    if reset:
        out["resets"] = torch.from_numpy(np.stack([s.resets()[:L] for s in streams]))
    if grace:
        out["grace"] = torch.from_numpy(np.stack([s.after_ends(grace)[:L] for s in streams]))
    return {k: v.to(device) for k, v in out.items()}


@torch.no_grad()
def predict(model: RecurrentClassifier, stream: Stream, oracle_reset: bool = False,
            chunk: int = 8192) -> np.ndarray:
    """Logits [T, C] of ``model`` run over the whole stream with batch 1, state carried
    throughout (reset only at sample starts when ``oracle_reset``)."""
    model.eval()
    device = next(model.parameters()).device
    state, out = tuple(s.to(device) for s in model.init_state(1)), []
    resets = torch.from_numpy(stream.resets()).to(device) if oracle_reset else None
    for t0 in range(0, len(stream), chunk):
        x = torch.from_numpy(stream.x[t0:t0 + chunk])[None].to(device)
        r = None if resets is None else resets[t0:t0 + chunk][None]
        logits, state = model(x, state, r)
        out.append(logits[0].cpu().numpy())
    return np.concatenate(out)


def evaluate(model: RecurrentClassifier, stream: Stream, threshold: float,
             oracle_reset: bool = False) -> dict:
    return stream_metrics(predict(model, stream, oracle_reset), stream.labels, stream.mask,
                          stream.ends, threshold)


def evaluations(mode_name: str) -> list[tuple[str, bool]]:
    """(eval name, oracle resets) a model of this training mode is scored under: unreset,
    and periodic-reset also with the oracle that zeroes its state at sample starts."""
    mode = TRAINING_MODES.get(mode_name)
    return [("no-reset", False)] + ([("oracle-reset", True)] if mode and mode.oracle_reset else [])


def evaluation_records(model, task, stream: Stream, mode_name: str, background: Stream | None = None,
                       threshold: float | None = None) -> list[dict]:
    """Every model on the same unreset stream; periodic-reset also with its oracle. Audio
    tasks also get keyword metrics as the field reports them, at ``threshold`` (default the
    task's): hits, misses and false accepts of the runtime's event detection, false accepts
    on ``background`` (background only, each second once) and during non-keyword speech, each
    with the distinct seconds it rests on and its 95% upper bound, and the DET curve with its
    operating point at 1 false accept per hour."""
    records = []
    for name, oracle in evaluations(mode_name):
        logits = predict(model, stream, oracle)
        rec = {"eval": name, **stream_metrics(logits, stream.labels, stream.mask, stream.ends, task.threshold)}
        if task.period_s and background is not None:
            rec.update(_keyword_record(softmax(logits), softmax(predict(model, background, False)), stream, task,
                                       task.threshold if threshold is None else threshold))
        records.append(rec)
    return records


def _keyword_record(probs, bg_probs, stream: Stream, task, threshold: float) -> dict:
    from edgerf.runtime.events import FILLER_CLASSES, detect_events
    classes = list(task.classes)
    keywords = [c for c in classes if c not in FILLER_CLASSES]
    events = detect_events(probs, classes, threshold)
    km = keyword_metrics(events, stream, classes, task.period_s)
    # non-keyword speech: keyword events that overlap an _unknown_ word (its end + 0.5 s)
    unknown = [(int(s), int(e)) for s, e in zip(stream.starts, stream.ends)
               if classes[int(stream.labels[e])] in FILLER_CLASSES]
    tol = int(round(0.5 / task.period_s))
    on_unknown = sum(any(ev.start <= e + tol and ev.end >= s for s, e in unknown)
                     for ev in events if ev.name in keywords)
    curve = det_curve(probs, stream, bg_probs, classes, task.period_s)
    op = operating_point(curve, 1.0)
    bg_seconds = len(bg_probs) * task.period_s
    on_background = len(detect_events(bg_probs, classes, threshold, keywords=keywords))
    return {"threshold": threshold, "hits": km["hits"], "misses": km["misses"], "miss_rate": km["miss_rate"],
            "false_accepts": km["false_accepts"], "stream_fa_per_hour": km["fa_per_hour"],
            "latency_ms": km["latency_ms"], "background_fa": rate_per_hour(on_background, bg_seconds),
            "unknown_fa": rate_per_hour(on_unknown, sum(e - s + 1 for s, e in unknown) * task.period_s),
            "fa_per_hour": on_background / (bg_seconds / 3600),
            "background_hours": bg_seconds / 3600,
            "miss_at_1fa_h": op["miss_rate"] if op else 1.0, "threshold_at_1fa_h": op["threshold"] if op else None,
            "det": curve}


def train(cfg: TrainConfig, progress: bool = True,
          log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Checkpoint | None:
    """Train one model; return its checkpoint with test-stream results filled in.

    Under torchrun (``edgerf.distributed``) every rank runs this with the same config:
    the ``batch`` lanes are dealt over the ranks, gradients are averaged, and rank 0
    alone evaluates and returns the checkpoint (the other ranks return None)."""
    dist = setup(cfg.device)
    try:
        return _train(cfg, dist, progress and dist.main, log if dist.main else (lambda s: None))
    finally:
        teardown(dist)


def _train(cfg: TrainConfig, dist: Dist, progress: bool, log) -> Checkpoint | None:
    if cfg.loss not in TRAINING_MODES:
        raise ValueError(f"unknown loss {cfg.loss!r}; known: {', '.join(TRAINING_MODES)}")
    task = get_task(cfg.task).bind(cfg.data, cfg.background).resolve(cfg.words).with_gaps(
        cfg.gap_kind, cfg.gap_min, cfg.gap_max)
    if cfg.frame_stack is not None:
        if not hasattr(task, "with_stack"):
            raise ValueError("--frame-stack is for audio tasks (gsc)")
        task = task.with_stack(cfg.frame_stack)
    if cfg.gain_min_db is not None or cfg.gain_max_db is not None:
        if not hasattr(task, "with_gain"):
            raise ValueError("--gain-min-db/--gain-max-db are for audio tasks (gsc)")
        task = task.with_gain(cfg.gain_min_db, cfg.gain_max_db)
    mode = TRAINING_MODES[cfg.loss]
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    train_arrays = _training_samples(task, cfg, dist)
    n_train = len(train_arrays[0])
    val = task.stream("val", cfg.val_samples, seed=cfg.seed + 1)

    model = RecurrentClassifier(model_config(cfg, task)).to(dist.device)
    net = model
    if dist.backend is not None:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[dist.local_rank] if dist.device.startswith("cuda") else None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    chunks_per_epoch = max(1, int(n_train // cfg.batch * task.steps_per_sample) // cfg.bptt)
    sched = cosine_schedule(opt, chunks_per_epoch * cfg.epochs)

    state = tuple(s.to(dist.device) for s in model.init_state(len(dist.lanes(cfg.batch))))
    history, t_start = [], time.perf_counter()
    for epoch in range(cfg.epochs):
        lanes = _epoch_lanes(task, train_arrays, cfg.batch, dist.lanes(cfg.batch), rng)
        L = dist.min_int(min(len(s) for s in lanes))      # the shortest lane over every rank
        batch, n_chunks = _batch(lanes, mode.oracle_reset, L, dist.device, cfg.grace), L // cfg.bptt
        t_epoch = time.perf_counter()
        with bar(f"epoch {epoch + 1}/{cfg.epochs}", n_chunks * cfg.bptt * cfg.batch, progress,
                 fields="loss {task.fields[loss]:.3f} acc_f {task.fields[acc]:.3f} "
                        "{task.fields[rate]:,.0f} steps/s", loss=float("nan"), acc=0.0, rate=0.0) as pb:
            state, loss_sum, hit, seen = _epoch(net, model, opt, sched, batch, n_chunks, state, mode, cfg, pb)
        loss_sum, hit, seen = dist.sum(loss_sum / dist.world, hit, seen)   # the mean over ranks of each chunk's loss
        if not dist.main:
            continue
        vm = evaluate(model, val, task.threshold, oracle_reset=mode.oracle_reset)
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(n_chunks, 1),
                        "lane_steps": n_chunks * cfg.bptt * cfg.batch,
                        "train_acc_f": hit / max(seen, 1), "val_acc_p": vm["acc_p"],
                        "val_acc_f": vm["acc_f"], "val_false_alarm": vm["false_alarm"],
                        "seconds": time.perf_counter() - t_epoch})
        log(f"epoch {epoch + 1}/{cfg.epochs}  loss {history[-1]['loss']:.4f}  "
            f"train acc_f {history[-1]['train_acc_f']:.3f}  val acc_p {vm['acc_p']:.3f}  "
            f"val acc_f {vm['acc_f']:.3f}  val false_alarm {vm['false_alarm']:.4f}  "
            f"({history[-1]['seconds']:.0f} s)")
    train_seconds = time.perf_counter() - t_start
    if not dist.main:
        return None

    model.eval()
    model.to("cpu")
    decision = choose_operating_point(model, task, cfg.seed + 5, log) if task.period_s else None
    test, records = _test(model, task, cfg, train_seconds, log, decision["threshold"] if decision else None)
    return Checkpoint(
        model=model, task=task.spec(), decision=decision,
        training={"config": cfg.portable(), "command": cfg.command(), "history": history,
                  "data": {**task.provenance(), "train_samples": n_train,
                           "val_samples": len(val.ends), "test_steps": len(test)},
                  "distributed": dist.provenance(),
                  "train_seconds": round(train_seconds, 1)},
        results={"test": records}, versions=versions())
