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


def _epoch(net, model, opt, sched, chunk, n_chunks: int, state, mode, cfg: TrainConfig, pb,
           first: int = 0, sums=(0.0, 0, 0), after=None):
    """One pass of ``n_chunks`` truncated-BPTT chunks (``chunk(c)``: chunk c's batch of
    tensors [lanes, bptt, ...]), the state carried (detached) from chunk to chunk, from
    chunk ``first`` with running sums ``sums`` (a resumed epoch). ``after(c, state, sums)``
    runs after each chunk. Returns (state, summed chunk loss, informative hits, informative
    steps)."""
    t0 = time.perf_counter()
    loss_sum, hit, seen = sums
    model.train()
    for c in range(first, n_chunks):
        b = chunk(c)
        logits, state = net(b["x"], state, b["resets"] if mode.oracle_reset else None)
        state = tuple(s.detach() for s in state)
        loss = stream_loss(logits, b["labels"], b["mask"], mode.loss, b.get("grace"), cfg.end_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        sched.step()
        m = b["mask"]
        hit += int((logits.argmax(-1)[m] == b["labels"][m]).sum())
        seen += int(m.sum())
        loss_sum += loss.item()
        steps = (c + 1 - first) * cfg.bptt * cfg.batch
        pb.advance(cfg.bptt * cfg.batch, loss=loss_sum / (c + 1), acc=hit / max(seen, 1),
                   rate=steps / (time.perf_counter() - t0))
        if after is not None:
            after(c + 1, state, (loss_sum, hit, seen))
    return state, loss_sum, hit, seen


def _slices(batch: dict, bptt: int):
    """Chunk c of whole-epoch lanes: a slice of the stacked tensors."""
    return lambda c: {k: v[:, c * bptt:(c + 1) * bptt] for k, v in batch.items()}


def _pieces(lanes, cfg: TrainConfig, device: str):
    """Chunk c of piecewise lanes: the next bptt steps of every lane."""
    def chunk(c):
        t = lanes.take(cfg.bptt)
        out = {"x": t["x"], "labels": t["labels"], "mask": t["mask"], "resets": t["resets"]}
        if cfg.grace:
            out["grace"] = t["grace"]
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in out.items()}
    return chunk


TRAIN_STATE_FORMAT = "edgerf-train-state/1"
MAX_TRAIN_STATE_BYTES = 1 << 32     # weights, optimiser moments and the lanes' positions: far less


def _save_train_state(path, dist: Dist, cfg: TrainConfig, model, opt, sched, state, lanes, epoch: int,
                      chunk: int, sums, history: list, elapsed: float, save_id: int) -> None:
    """Everything a run needs to continue exactly: weights, optimiser and schedule, and per
    rank its carried recurrent state and lane positions. Each rank but 0 writes its part as
    ``PATH.rank<r>.<save_id>``; once all have, rank 0 writes PATH (the shared part and its
    own, naming ``save_id``) as the commit; older rank files go after. A run killed at any
    moment leaves a PATH whose rank files all exist. Every file is written atomically."""
    import io
    from edgerf.runtime.atomic import write_bytes
    mine = {"state": [s.detach().cpu() for s in state], "position": lanes.position, "sums": list(sums)}
    if dist.main:
        mine |= {"format": TRAIN_STATE_FORMAT, "config": cfg.portable(), "model": model.state_dict(),
                 "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch, "chunk": chunk,
                 "history": history, "elapsed": elapsed, "world": dist.world, "save_id": save_id}
    buf = io.BytesIO()
    torch.save(mine, buf)
    if not dist.main:
        write_bytes(_rank_file(path, dist.rank, save_id), buf.getvalue())
    dist.barrier()                 # every rank's part is on disk before the commit
    if dist.main:
        write_bytes(path, buf.getvalue())
    dist.barrier()
    if not dist.main:
        for old in path.parent.glob(f"{path.name}.rank{dist.rank}.*"):
            if old.name != _rank_file(path, dist.rank, save_id).name:
                old.unlink(missing_ok=True)


def _rank_file(path, rank: int, save_id: int):
    return path.with_name(f"{path.name}.rank{rank}.{save_id}")


def _load_train_state(path, dist: Dist, cfg: TrainConfig) -> dict:
    from edgerf.checkpoint import read_payload
    from edgerf.runtime.errors import CheckpointError

    def read(p):          # a damaged state (a disk that filled, a copy cut short) says so; no traceback
        return read_payload(p, "training state", "Delete it and start the run again without --resume.",
                            MAX_TRAIN_STATE_BYTES)

    shared = read(path)
    if not isinstance(shared, dict) or shared.get("format") != TRAIN_STATE_FORMAT:
        raise CheckpointError(f"{path} is not an edgerf training state.")
    keep = {k: v for k, v in cfg.portable().items() if k not in ("workers", "save_every", "threads", "device")}
    then = {k: v for k, v in shared["config"].items() if k in keep}
    if then != keep or shared["world"] != dist.world:
        diff = sorted(k for k in keep if then.get(k) != keep[k])
        raise CheckpointError(f"{path} was saved by another run ({', '.join(diff) or 'a different number of ranks'} "
                              "differ); resume with the options it was started with.")
    mine = shared if dist.main else read(_rank_file(path, dist.rank, shared["save_id"]))
    return {**shared, "state": mine["state"], "position": mine["position"], "sums": mine["sums"]}


def _test(model, task, cfg: TrainConfig, train_seconds: float, log,
          decision: dict | None = None) -> tuple[Stream, list[dict]]:
    """The final numbers: one long unreset test stream (and, for audio, every distinct second
    of the test background, up to --background-hours); keyword events at the operating point
    ``decision`` (window and threshold), else the task's threshold."""
    test = task.stream("test", task.samples_for_steps(cfg.test_steps), seed=cfg.seed + 2)
    base = {"task": task.name, "model": cfg.model, "loss": cfg.loss, "hidden": cfg.hidden,
            "epochs": cfg.epochs, "seed": cfg.seed, "train_seconds": round(train_seconds, 1)}
    if getattr(task, "stack", 1) != 1:
        base["frame_stack"] = task.stack
    background = task.background_stream("test", cfg.background_hours * 3600, seed=cfg.seed + 3) \
        if task.period_s and cfg.background_hours > 0 else None
    records = [{**base, **r} for r in evaluation_records(model, task, test, cfg.loss, background, decision)]
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


# The operating point (the decision a keyword model ships: smoothing window, merge and
# threshold): chosen on the validation split, never the test split: the most keywords found
# among the points whose false accepts (up to OP_VAL_SAMPLES val clips in one unreset stream,
# plus every distinct second of val background up to an hour) stay at or under one per
# OP_KEYWORDS_PER_FALSE_ACCEPT keywords.
OP_KEYWORDS_PER_FALSE_ACCEPT = 30
OP_WINDOWS = (3, 5, 8)
OP_MERGES = (0, 6, 12)        # steps within which runs above threshold are one event (EventDetector)
# At most this many val clips (all of them on Speech Commands' 4,890-clip test folder): the
# stream is held whole (its frames, ~30 KB a clip), so the cap bounds its memory on big data
OP_VAL_SAMPLES = 2000
OP_THRESHOLDS = tuple(float(t) for t in np.round(np.linspace(0.5, 0.99, 50), 3))


def final_evaluation(model, task, cfg: TrainConfig, train_seconds: float, log=lambda s: None):
    """What a finished run records: the operating point (audio) and the test records at it."""
    decision = choose_operating_point(model, task, cfg.seed + 5, log) if task.period_s else None
    test, records = _test(model, task, cfg, train_seconds, log, decision)
    return decision, test, records


def choose_operating_point(model, task, seed: int, log=lambda s: None) -> dict:
    """The operating point of an audio model on its validation split (see OP_*)."""
    from edgerf.runtime.events import FILLER_CLASSES, detect_events
    classes = list(task.classes)
    keywords = [c for c in classes if c not in FILLER_CLASSES]
    val = task.stream("val", OP_VAL_SAMPLES, seed=seed)
    bg = task.background_stream("val", 3600.0, seed=seed)
    probs, bg_probs = softmax(predict(model, val)), softmax(predict(model, bg))
    rows = []
    for window in OP_WINDOWS:
        for merge in OP_MERGES:
            for thr in OP_THRESHOLDS:
                km = keyword_metrics(detect_events(probs, classes, thr, window, merge=merge), val, classes,
                                     task.period_s)
                fa_bg = len(detect_events(bg_probs, classes, thr, window, keywords=keywords, merge=merge))
                rows.append({"threshold": thr, "window": window, "merge": merge, "keywords": km["keywords"],
                             "misses": km["misses"], "false_accepts": km["false_accepts"] + fa_bg})
    ok = [r for r in rows if r["false_accepts"] * OP_KEYWORDS_PER_FALSE_ACCEPT <= r["keywords"]]
    best = min(ok or rows, key=lambda r: (r["misses"] if ok else r["false_accepts"], -r["threshold"], r["window"],
                                          r["merge"]))
    op = {**best, "chosen_on": "val",
          "rule": f"most keywords found with at most 1 false accept per {OP_KEYWORDS_PER_FALSE_ACCEPT} keywords "
                  f"(windows {', '.join(map(str, OP_WINDOWS))} steps, merges {', '.join(map(str, OP_MERGES))} "
                  "steps, thresholds 0.5-0.99)",
          "met": bool(ok), "val_stream_s": round(len(val) * task.period_s, 1),
          "val_background_s": round(len(bg) * task.period_s, 1)}
    log(f"operating point (val): window {op['window']}, merge {op['merge']}, threshold {op['threshold']:.2f}: "
        f"{op['misses']} of "
        f"{op['keywords']} keywords missed, {op['false_accepts']} false accepts over {op['val_stream_s']:.0f} s of "
        f"val stream and {op['val_background_s']:.0f} s of val background" + ("" if ok else " (no point met the rule)"))
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
                       decision: dict | None = None) -> list[dict]:
    """Every model on the same unreset stream; periodic-reset also with its oracle. Audio
    tasks also get keyword metrics as the field reports them, at the operating point
    ``decision`` (default: the task's threshold, window 3): hits, misses and false accepts of the runtime's event detection, false accepts
    on ``background`` (background only, each second once) and during non-keyword speech, each
    with the distinct seconds it rests on and its 95% upper bound, and the DET curve with its
    operating point at 1 false accept per hour."""
    records = []
    for name, oracle in evaluations(mode_name):
        logits = predict(model, stream, oracle)
        rec = {"eval": name, **stream_metrics(logits, stream.labels, stream.mask, stream.ends, task.threshold)}
        if task.period_s and background is not None:
            rec.update(_keyword_record(softmax(logits), softmax(predict(model, background, False)), stream, task,
                                       decision or {"threshold": task.threshold, "window": 3}))
        records.append(rec)
    return records


def _keyword_record(probs, bg_probs, stream: Stream, task, decision: dict) -> dict:
    from edgerf.runtime.events import FILLER_CLASSES, detect_events
    classes = list(task.classes)
    keywords = [c for c in classes if c not in FILLER_CLASSES]
    threshold, window, merge = decision["threshold"], decision.get("window", 3), decision.get("merge", 0)
    events = detect_events(probs, classes, threshold, window, merge=merge)
    km = keyword_metrics(events, stream, classes, task.period_s)
    # non-keyword speech: keyword events that overlap an _unknown_ word (its end + 0.5 s)
    unknown = [(int(s), int(e)) for s, e in zip(stream.starts, stream.ends)
               if classes[int(stream.labels[e])] in FILLER_CLASSES]
    tol = int(round(0.5 / task.period_s))
    on_unknown = sum(any(ev.start <= e + tol and ev.end >= s for s, e in unknown)
                     for ev in events if ev.name in keywords)
    curve = det_curve(probs, stream, bg_probs, classes, task.period_s, window=window, merge=merge)
    op = operating_point(curve, 1.0)
    bg_seconds = len(bg_probs) * task.period_s
    on_background = len(detect_events(bg_probs, classes, threshold, window, keywords=keywords, merge=merge))
    return {"threshold": threshold, "window": window, "merge": merge, "hits": km["hits"], "misses": km["misses"], "miss_rate": km["miss_rate"],
            "false_accepts": km["false_accepts"], "stream_fa_per_hour": km["fa_per_hour"],
            "latency_ms": km["latency_ms"], "background_fa": rate_per_hour(on_background, bg_seconds),
            "unknown_fa": rate_per_hour(on_unknown, sum(e - s + 1 for s, e in unknown) * task.period_s),
            "fa_per_hour": on_background / (bg_seconds / 3600),
            "background_hours": bg_seconds / 3600,
            "miss_at_1fa_h": op["miss_rate"] if op else 1.0, "threshold_at_1fa_h": op["threshold"] if op else None,
            "det": curve}


def train(cfg: TrainConfig, progress: bool = True,
          log: Callable[[str], None] = lambda s: print(s, file=sys.stderr), state_file=None,
          resume: bool = False) -> Checkpoint | None:
    """Train one model; return its checkpoint with test-stream results filled in.

    Under torchrun (``edgerf.distributed``) every rank runs this with the same config:
    the ``batch`` lanes are dealt over the ranks, gradients are averaged, and rank 0
    alone evaluates and returns the checkpoint (the other ranks return None)."""
    dist = setup(cfg.device)
    try:
        return _train(cfg, dist, progress and dist.main, log if dist.main else (lambda s: None), state_file, resume)
    finally:
        teardown(dist)


# With --save-every, whether a save is due is agreed over the ranks every this many chunks
SAVE_CHECK_CHUNKS = 8


def _train(cfg: TrainConfig, dist: Dist, progress: bool, log, state_file=None,
           resume: bool = False) -> Checkpoint | None:
    if cfg.loss not in TRAINING_MODES:
        raise ValueError(f"unknown loss {cfg.loss!r}; known: {', '.join(TRAINING_MODES)}")
    if cfg.end_weight and not (cfg.grace and cfg.loss == "reset-free"):
        raise ValueError("--end-weight weights the KL term on the first --grace N noise steps after each sample: "
                         "give --grace N (N >= 1) with --loss reset-free")
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
    if cfg.mix_snr_min_db is not None or cfg.mix_snr_max_db is not None:
        if not hasattr(task, "with_mix_snr"):
            raise ValueError("--mix-snr-min-db/--mix-snr-max-db are for audio tasks (gsc)")
        task = task.with_mix_snr(cfg.mix_snr_min_db, cfg.mix_snr_max_db)
    if cfg.bed_snr_min_db is not None or cfg.bed_snr_max_db is not None:
        if not hasattr(task, "with_bed_snr"):
            raise ValueError("--bed-snr-min-db/--bed-snr-max-db are for audio tasks (gsc)")
        task = task.with_bed_snr(cfg.bed_snr_min_db, cfg.bed_snr_max_db)
    if cfg.speed_min is not None or cfg.speed_max is not None:
        if not hasattr(task, "with_speed"):
            raise ValueError("--speed-min/--speed-max are for audio tasks (gsc)")
        task = task.with_speed(cfg.speed_min, cfg.speed_max)
    if cfg.warp_min is not None or cfg.warp_max is not None:
        if not hasattr(task, "with_warp"):
            raise ValueError("--warp-min/--warp-max are for audio tasks (gsc)")
        task = task.with_warp(cfg.warp_min, cfg.warp_max)
    if cfg.freq_mask is not None:
        if not hasattr(task, "with_freq_mask"):
            raise ValueError("--freq-mask is for audio tasks (gsc)")
        task = task.with_freq_mask(cfg.freq_mask)
    if cfg.clean_mask:
        if not hasattr(task, "with_clean_mask"):
            raise ValueError("--clean-mask is for audio tasks (gsc)")
        task = task.with_clean_mask(True)
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
    history, t_start, start_epoch, start_chunk, sums = [], time.perf_counter(), 0, 0, (0.0, 0, 0)
    saved = None
    if resume:
        saved = _load_train_state(state_file, dist, cfg)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        state = tuple(s.to(dist.device) for s in saved["state"])
        history, start_epoch, start_chunk = saved["history"], saved["epoch"], saved["chunk"]
        sums, t_start = tuple(saved["sums"]), t_start - saved["elapsed"]
        log(f"resuming from {state_file}: epoch {start_epoch + 1}, chunk {start_chunk} of {chunks_per_epoch}")
    lanes = None
    if cfg.lane_piece:
        from edgerf.data.lanes import Lanes
        lanes = Lanes(task, train_arrays, cfg.batch, dist.lanes(cfg.batch), cfg.seed, cfg.lane_piece, cfg.workers,
                      grace=cfg.grace, position=saved["position"] if saved else None)
    last_save = [time.perf_counter(), saved["save_id"] if saved else 0]

    def maybe_save(epoch, c, state, sums, force=False):
        if state_file is None or c % SAVE_CHECK_CHUNKS and not force:
            return
        due = dist.sum(float(dist.main and time.perf_counter() - last_save[0] >= cfg.save_every * 60))[0]
        if due or force:
            last_save[1] += 1
            _save_train_state(state_file, dist, cfg, model, opt, sched, state, lanes, epoch, c, sums, history,
                              time.perf_counter() - t_start, last_save[1])
            last_save[0] = time.perf_counter()

    try:
        for epoch in range(start_epoch, cfg.epochs):
            if lanes is None:
                epoch_lanes = _epoch_lanes(task, train_arrays, cfg.batch, dist.lanes(cfg.batch), rng)
                L = dist.min_int(min(len(s) for s in epoch_lanes))      # the shortest lane over every rank
                n_chunks = L // cfg.bptt
                chunk = _slices(_batch(epoch_lanes, mode.oracle_reset, L, dist.device, cfg.grace), cfg.bptt)
            else:
                n_chunks, chunk = chunks_per_epoch, _pieces(lanes, cfg, dist.device)
            first = start_chunk if epoch == start_epoch else 0
            t_epoch = time.perf_counter()
            waited, start_waited = (lanes.waited_s, lanes.start_wait_s) if lanes else (0.0, 0.0)
            with bar(f"epoch {epoch + 1}/{cfg.epochs}", (n_chunks - first) * cfg.bptt * cfg.batch, progress,
                     fields="loss {task.fields[loss]:.3f} acc_f {task.fields[acc]:.3f} "
                            "{task.fields[rate]:,.0f} steps/s", loss=float("nan"), acc=0.0, rate=0.0) as pb:
                state, loss_sum, hit, seen = _epoch(
                    net, model, opt, sched, chunk, n_chunks, state, mode, cfg, pb, first,
                    sums if epoch == start_epoch else (0.0, 0, 0),
                    after=(lambda c, st, sm, e=epoch: maybe_save(e, c, st, sm)) if lanes else None)
            loss_sum, hit, seen = dist.sum(loss_sum / dist.world, hit, seen)   # the mean over ranks of each chunk's loss
            if dist.main:
                vm = evaluate(model, val, task.threshold, oracle_reset=mode.oracle_reset)
                history.append({"epoch": epoch + 1, "loss": loss_sum / max(n_chunks, 1),
                                "lane_steps": n_chunks * cfg.bptt * cfg.batch,
                                "train_acc_f": hit / max(seen, 1), "val_acc_p": vm["acc_p"],
                                "val_acc_f": vm["acc_f"], "val_false_alarm": vm["false_alarm"],
                                "seconds": time.perf_counter() - t_epoch})
                if lanes is not None:        # how long the loop waited for data (workers building pieces)
                    seconds, start = max(history[-1]["seconds"], 1e-9), lanes.start_wait_s - start_waited
                    history[-1]["data_wait"] = (lanes.waited_s - waited) / seconds
                    # filling every lane before the first step is once per run, not per epoch
                    history[-1]["data_wait_start_s"] = start
                    history[-1]["data_wait_after_start"] = (lanes.waited_s - waited - start) / seconds
                log(f"epoch {epoch + 1}/{cfg.epochs}  loss {history[-1]['loss']:.4f}  "
                    f"train acc_f {history[-1]['train_acc_f']:.3f}  val acc_p {vm['acc_p']:.3f}  "
                    f"val acc_f {vm['acc_f']:.3f}  val false_alarm {vm['false_alarm']:.4f}  "
                    f"({history[-1]['seconds']:.0f} s"
                    + (f", {history[-1]['data_wait']:.1%} waiting for data, "
                       f"{history[-1]['data_wait_after_start']:.1%} after the first fill)" if lanes else ")"))
            if lanes is not None and state_file is not None and epoch + 1 < cfg.epochs:
                maybe_save(epoch + 1, 0, state, (0.0, 0, 0), force=True)
    finally:
        if lanes is not None:
            lanes.close()
    train_seconds = time.perf_counter() - t_start
    if not dist.main:
        return None

    model.eval()
    model.to("cpu")
    decision, test, records = final_evaluation(model, task, cfg, train_seconds, log)
    return Checkpoint(
        model=model, task=task.spec(), decision=decision,
        training={"config": cfg.portable(), "command": cfg.command(), "history": history,
                  "data": {**task.provenance(), "train_samples": n_train,
                           "val_samples": len(val.ends), "test_steps": len(test)},
                  "distributed": dist.provenance(),
                  "train_seconds": round(train_seconds, 1)},
        results={"test": records}, versions=versions())
