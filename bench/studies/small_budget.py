"""Can the int8 budget decide on a small val split? bench/results/small_budget.{md,json}.

    python -m edgerf.bench.studies.small_budget [--model kws-gru] [--target litert] [--samples 256]
                                                 [--splits 1000] [--contexts 16]

A user's dataset of a few speakers has a val split of a few hundred samples, on which one
flipped decision moves acc_p by 0.4 points. This simulates the export's check on many such
splits, with a real model's real fp32 and int8 decisions:

- The held-out speakers of the data (val and test splits; never the training speakers) are
  streamed ``--contexts`` times (seeded: new order, new gaps), and the model's fp32 and int8
  graphs run closed loop over each on ``--target``; each sample's decision in each context
  is kept. A context here is a stream over the whole held-out pool rather than over the
  split alone: what matters to a sample is what came before it, a random other sample and
  gap either way.
- A split: speakers drawn at random (seeded) until ``--samples`` samples (Fashion-MNIST has
  no speakers: samples at random). Its check sees its samples in as many contexts as the
  export streams a split of that size (``edgerf.export.pipeline.MAX_CONTEXTS``, drawn at
  random from those run), beside the old check, one context.
- Plans judged by the export's rule (``Budget.accepts_decisions`` on ``paired_acc_p_drop``;
  false alarms aside): **equivalent**, each sample's fp32 and int8 outcomes swapped with
  probability 1/2 (as good as fp32 in expectation, with int8's real pattern of flips);
  **int8**, the artifact as it is; **1 pt / 2 pt worse**, the equivalent plan with a random
  share of samples made wrong in every context (share / fp32 acc_p, so 1 or 2 pt in
  expectation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgerf.bench.report import markdown_table, result_file
from edgerf.bench.studies import RESULTS

POOL_SEED = 31_000      # contexts: seeds POOL_SEED + k


def outcomes(model: str, target: str | None, contexts: int, data: str | None = None, log=print) -> dict:
    """Correctness of the fp32 and int8 graphs of ``model`` (a built-in name or an export's
    base path) per context and held-out sample: ``ref``, ``plan``, ``present`` [K, N] bool,
    ``groups`` [N] (speaker, or the sample itself) and mean steps per sample."""
    from edgerf.data import speech
    from edgerf.models import BUILTINS, BUILTIN_DIR
    from edgerf.runtime import StepModel
    from edgerf.tasks import get_task

    base = BUILTIN_DIR / model if model in BUILTINS else Path(model)
    fp32 = StepModel.load(base.with_name(base.name + ".tflite"), target=target)
    int8 = StepModel.load(base.with_name(base.name + ".int8.tflite"), target=target)
    task = get_task(fp32.manifest["frame"]).bind(data)
    ref, plan, present, groups, steps = [], [], [], [], []
    for split in ("val", "test"):
        labels = task.split_arrays(split)[1]
        if hasattr(task, "split_mode"):      # speech: the speaker of each word clip, as split_arrays keeps them
            kept = [c for c in speech.list_clips(task.data.root, split, task.split_mode) if c.word != speech.SILENCE
                    and (c.word in task.classes or speech.UNKNOWN in task.classes)]
            groups += [f"{split}/{c.speaker}" for c in kept]
        else:
            groups += [f"{split}/{i}" for i in range(len(labels))]
        if len(groups) != sum(r.shape[1] for r in ref) + len(labels):
            raise RuntimeError(f"speakers of the {split} split do not line up with its clips")
        r, q, m = (np.zeros((contexts, len(labels)), bool) for _ in range(3))
        for k in range(contexts):
            s = task.stream(split, None, seed=POOL_SEED + k)
            truth = s.labels[s.ends]
            r[k, s.ids] = fp32.run(s.x)[s.ends].argmax(1) == truth
            q[k, s.ids] = int8.run(s.x)[s.ends].argmax(1) == truth
            m[k, s.ids] = True
            steps.append(len(s) / len(s.ends))
            log(f"  {split} context {k + 1}/{contexts}: {len(s):,} steps, {len(s.ends):,} samples")
        ref.append(r), plan.append(q), present.append(m)
    _, g = np.unique(groups, return_inverse=True)
    return {"ref": np.concatenate(ref, 1), "plan": np.concatenate(plan, 1), "present": np.concatenate(present, 1),
            "groups": g, "steps_per_sample": float(np.mean(steps)), "target": fp32.target,
            "artifacts": [fp32.path.name, int8.path.name]}


def export_contexts(samples: int, steps_per_sample: float) -> int:
    """How many times the export streams a val split of ``samples`` samples."""
    from edgerf.configs import ExportConfig
    from edgerf.export.pipeline import MAX_CONTEXTS
    return min(MAX_CONTEXTS, max(1, round(ExportConfig().check_steps / (samples * steps_per_sample))))


def simulate(o: dict, samples: int, splits: int, contexts: int, seed: int = 0) -> list[dict]:
    """Pass rates of each plan over ``splits`` resampled splits of ``samples`` samples, checked
    in ``contexts`` contexts (and in one, the old check)."""
    from edgerf.configs import Budget
    from edgerf.export.quantize import paired_acc_p_drop

    budget = Budget()
    ref, plan, present, groups = o["ref"], o["plan"], o["present"], o["groups"]
    K = ref.shape[0]
    acc = float(ref[present].mean())
    tally: dict[tuple, list] = {}
    for j in range(splits):
        rng = np.random.default_rng([seed, j])
        chosen = []
        for g in rng.permutation(groups.max() + 1):
            chosen += np.flatnonzero(groups == g).tolist()
            if len(chosen) >= samples:
                break
        idx = np.asarray(rng.permutation(chosen)[:samples])
        swap = rng.random(len(idx)) < 0.5
        r, q = ref[:, idx], plan[:, idx]
        eq_r, eq_q = np.where(swap, q, r), np.where(swap, r, q)
        plans = {"equivalent": (eq_r, eq_q), "int8": (r, q)}
        for worse in (0.01, 0.02):
            broken = rng.random(len(idx)) < worse / acc
            plans[f"{worse * 100:g} pt worse"] = (eq_r, eq_q & ~broken)
        for c in sorted({1, contexts}):
            ks = rng.choice(K, c, replace=False)
            m = present[ks][:, idx]
            ids = np.broadcast_to(np.arange(len(idx)), m.shape)[m]
            for name, (a, b) in plans.items():
                p = paired_acc_p_drop(a[ks][m].astype(int), b[ks][m].astype(int), np.ones(m.sum(), int), ids)
                old = p["drop"] <= budget.max_acc_p_drop and not p["ci95"][1] > budget.max_acc_p_drop_upper
                tally.setdefault((name, c), []).append(
                    (budget.accepts_decisions(p), old, p["drop"], budget.power(p["se_null"])["detectable_drop"]))
    rows = []
    for (name, c), v in tally.items():
        ok, old, drop, det = map(np.asarray, zip(*v))
        rows.append({"plan": name, "contexts": c, "splits": len(v), "passes": round(float(ok.mean()), 4),
                     "old_rule_passes": round(float(old.mean()), 4),
                     "mean_drop_pt": round(float(drop.mean()) * 100, 3),
                     "detectable_drop_pt": round(float(np.median(det)) * 100, 2)})
    return sorted(rows, key=lambda r: (r["contexts"], list(dict.fromkeys(k[0] for k in tally)).index(r["plan"])))


def main(argv=None) -> int:
    from edgerf.bench.machine import machine_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="kws-gru", help="a built-in, or an export's base path (its .tflite and "
                                                      ".int8.tflite are read)")
    p.add_argument("--target", help="the TFLite target both graphs run on (default: the runtime's choice)")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--splits", type=int, default=1000)
    p.add_argument("--contexts", type=int, default=16, help="contexts run over the pool")
    p.add_argument("--data")
    p.add_argument("--out", default=str(RESULTS / "small_budget"))
    a = p.parse_args(argv)
    o = outcomes(a.model, a.target, a.contexts, a.data)
    c = min(export_contexts(a.samples, o["steps_per_sample"]), a.contexts)
    rows = simulate(o, a.samples, a.splits, c)
    pool = {"samples": int(o["present"].any(0).sum()), "groups": int(o["groups"].max() + 1),
            "fp32_acc_p": round(float(o["ref"][o["present"]].mean()), 4),
            "int8_drop_pt": round(float((o["ref"][o["present"]].mean() - o["plan"][o["present"]].mean()) * 100), 3)}
    command = "python -m edgerf.bench.studies.small_budget " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(a.out)
    result_file(out, ".json").write_text(json.dumps({"command": command.strip(), "machine": machine_info(),
                                                    "target": o["target"], "artifacts": o["artifacts"], "pool": pool,
                                                    "export_contexts": c, "rows": rows}, indent=1) + "\n")
    text = (f"# The int8 budget on small val splits\n\nProduced by `{command.strip()}`: {a.splits:,} splits of "
            f"{a.samples} samples drawn by speaker from the held-out pool ({pool['samples']:,} samples, "
            f"{pool['groups']:,} speakers or samples) of `{a.model}`, its `{o['artifacts'][0]}` and "
            f"`{o['artifacts'][1]}` run on target `{o['target']}`; over the whole pool and {a.contexts} contexts "
            f"fp32 acc_p is {pool['fp32_acc_p']:.4f} and the int8 graph loses {pool['int8_drop_pt']:+.3f} pt. "
            f"`contexts` 1 is the old check (one stream); {c} is how many times the export streams a split "
            "this size. `passes`: share of splits where the budget's decision rule keeps the plan (`Budget."
            "accepts_decisions`: the drop within 0.5 pt plus 1.28 standard errors, never over 1 pt; at most 5% of "
            "decisions changed); `old_rule_passes`: the rule before (drop within 0.5 pt and the upper end of its "
            "paired 95% interval within 1 pt); `detectable_drop_pt`: the median over splits of "
            "the smallest true drop that check fails 90% of the time (`Budget.power`). How plans are made: the "
            "module's docstring.\n\n" + markdown_table(rows, list(rows[0])) + "\n")
    result_file(out, ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
