"""Sweeps: a grid of training runs (families x losses x seeds x widths) as Ray Tune trials.

One trial is one ``edgerf train`` run (``run_trial``): its checkpoint is written
atomically into the sweep folder under a name made of what varies, so a sweep that is
killed and started again finds the finished trials' checkpoints and only reports them.
Ray runs the trials: an embedded local Ray by default (``num_cpus`` = this machine),
``address`` for an existing cluster (every node must see the data and the sweep folder
at the same paths), ``cpus`` per trial (one torch thread per CPU). Without Ray
(``edgerf[sweep]`` not installed) the same trials run in a local process pool.

Results are one record per trial and evaluation, with the trial's command, written as
JSONL and a Markdown table in the form the training grids use.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgerf.runtime.atomic import write_text
from edgerf.runtime.errors import EdgerfError
from edgerf.train import TrainConfig

COLUMNS = ["model", "loss", "hidden", "seed", "eval", "acc_p", "acc_f", "false_alarm", "noise_conf", "steps",
           "samples", "train_seconds", "command"]


@dataclass(frozen=True)
class SweepConfig:
    base: TrainConfig                        # what every trial shares (task, epochs, batch, data...)
    models: tuple[str, ...] = ("gru",)
    losses: tuple[str, ...] = ("reset-free",)
    seeds: tuple[int, ...] = (0,)
    hidden: tuple[int, ...] = (128,)
    out: str = "runs/sweep"                  # checkpoints and logs, one per trial
    results: str | None = None               # JSONL/Markdown prefix (default <out>/sweep)
    address: str | None = None               # an existing Ray cluster; None: embedded local Ray
    cpus: int = 1                            # CPUs (= torch threads) per trial
    engine: str = "auto"                     # ray, pool, or auto (ray when installed)
    names: dict = field(default_factory=dict)   # (model, loss, seed) -> file stem (the grids' historic names)

    def trials(self) -> list[TrainConfig]:
        return [replace(self.base, model=m, loss=lo, seed=s, hidden=h, threads=self.cpus)
                for m, lo, s, h in itertools.product(self.models, self.losses, self.seeds, self.hidden)]


def _trials(n: int) -> str:
    return f"{n} trial{'s' if n != 1 else ''}"


def trial_name(cfg: TrainConfig) -> str:
    return f"{cfg.model}-{cfg.loss}-h{cfg.hidden}-s{cfg.seed}"


def run_trial(cfg: TrainConfig, out: str, name: str | None = None) -> list[dict]:
    """Train one trial (or reuse its finished checkpoint) and return its result records."""
    from edgerf import checkpoint
    from edgerf.train import train

    name = name or trial_name(cfg)
    path = Path(out) / f"{name}.pt"
    if path.exists():
        ck = checkpoint.load(path)
        records, command = ck.results["test"], ck.training.get("command")
    else:
        with open(Path(out) / f"{name}.log", "w") as f:
            ck = train(cfg, progress=False, log=lambda s: print(s, file=f, flush=True))
        checkpoint.save(path, ck)
        records, command = ck.results["test"], cfg.command()
    return [{**r, "hidden": cfg.hidden, "seed": cfg.seed, "command": command, "checkpoint": path.name}
            for r in records]


def _ray_trial(config: dict) -> None:
    from ray import tune
    t = config["trial"]
    records = run_trial(TrainConfig(**t["trial"]), t["out"], t["name"])
    tune.report({"records_json": _json(records), "done": 1})


def _engine(requested: str) -> str:
    if requested not in ("auto", "ray", "pool"):
        raise ValueError(f"engine must be auto, ray or pool, not {requested!r}")
    if requested == "pool":
        return "pool"
    try:
        import ray  # noqa: F401
        return "ray"
    except ImportError:
        if requested == "ray":
            raise ImportError("Ray is not installed: pip install 'edgerf[sweep]'") from None
        return "pool"


def run_sweep(cfg: SweepConfig, log=print) -> dict:
    """Run every trial (finished ones are reused) and write the result tables."""
    if cfg.address:
        _check_reachable(cfg.address)
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    trials = cfg.trials()
    # every worker reads the same data: resolve the folder once, here
    from edgerf.tasks import get_task
    source = get_task(cfg.base.task).bind(cfg.base.data, cfg.base.background).data
    trials = [replace(t, data=str(source.root), background=source.background and str(source.background))
              for t in trials]
    names = [cfg.names.get((t.model, t.loss, t.seed), trial_name(t)) for t in trials]
    done = sum((out / f"{n}.pt").exists() for n in names)
    engine = _engine(cfg.engine)
    log(f"sweep: {_trials(len(trials))} ({done} already finished) on {engine}, {cfg.cpus} CPU each, into {out}")
    t0 = time.perf_counter()
    if engine == "ray":
        records = _run_ray(trials, names, out, cfg, log)
    else:
        import multiprocessing as mp
        jobs = max(1, (os.cpu_count() or 1) // cfg.cpus)
        with mp.get_context("spawn").Pool(min(jobs, len(trials))) as pool:
            parts = pool.starmap(run_trial, [(t, str(out), n) for t, n in zip(trials, names)])
        records = [r for p in parts for r in p]
    wall = time.perf_counter() - t0
    records.sort(key=lambda r: (r["model"], r["loss"], r["hidden"], r["seed"], r["eval"]))
    prefix = Path(cfg.results) if cfg.results else out / "sweep"
    write_text(prefix.with_suffix(".jsonl"), "".join(_json(r) + "\n" for r in records))
    write_text(prefix.with_suffix(".md"), sweep_markdown(records, cfg, engine, wall))
    log(f"sweep: {_trials(len(trials))} in {wall:.0f} s; wrote {prefix.with_suffix('.md')}")
    return {"records": records, "seconds": wall, "engine": engine, "reused": done}


# Ray retries an unreachable cluster for minutes without a word; a refusal within this is plain
CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """An EdgerfError, before any work, when nothing answers at a Ray cluster's ``host:port``
    (or ``ray://host:port``); "auto" and "local" are Ray's to resolve."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise EdgerfError(f"--address {address!r}: expected host:port (or ray://host:port, or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise EdgerfError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); start one "
                          "(ray start --head) or drop --address to run a local Ray.") from None


def _run_ray(trials, names, out: Path, cfg: SweepConfig, log) -> list[dict]:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")     # Tune's console table: the sweep writes its own
    import ray
    from ray import tune

    if not ray.is_initialized():
        try:
            # no --address: a Ray of our own ("local"). ray.init() with no address joins whatever
            # $RAY_ADDRESS or /tmp/ray names, a cluster the user started for something else or
            # one a killed sweep left behind, and num_cpus is refused when joining
            ray.init(address=cfg.address or "local", include_dashboard=False, log_to_driver=False,
                     configure_logging=False, **({} if cfg.address else {"num_cpus": os.cpu_count()}))
        except ConnectionError as e:           # something answered at the address, but not a Ray cluster
            raise EdgerfError(f"--address {cfg.address}: {e}; check the address (ray status on the head "
                              "node prints it) or drop --address to run a local Ray.") from None
    space = [{"trial": asdict(t), "out": str(out), "name": n} for t, n in zip(trials, names)]
    tuner = tune.Tuner(tune.with_resources(_ray_trial, {"cpu": cfg.cpus}),
                       param_space={"trial": tune.grid_search(space)},
                       run_config=tune.RunConfig(name="edgerf-sweep", storage_path=str(out / "ray"),
                                                 verbose=0))
    grid = tuner.fit()
    failed = [r.error for r in grid if r.error is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} sweep trial(s) failed; the first: {failed[0]}")
    import json
    return [rec for r in grid for rec in json.loads(r.metrics["records_json"])]


def _json(r) -> str:
    import json
    return json.dumps(r, sort_keys=True)


def sweep_markdown(records: list[dict], cfg: SweepConfig, engine: str, wall: float) -> str:
    from edgerf.bench.report import markdown_table
    head = (f"# Sweep: {cfg.base.task}, {len(cfg.trials())} trials\n\n"
            f"Each row is one trial and evaluation on the same unreset test stream; `command` reproduces it. "
            f"Ran on {engine} with {cfg.cpus} CPU per trial in {wall:.0f} s wall time "
            "(finished trials are reused, not rerun).\n\n")
    return head + markdown_table(records, COLUMNS)
