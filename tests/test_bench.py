"""edgerf bench: latency maths, report schema, reference fallbacks, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgerf import checkpoint
from conftest import run_blocked
from edgerf.bench.latency import LatencyStats, measure_latency
from edgerf.bench.run import BenchConfig, run_bench
from edgerf.cells import ModelConfig, RecurrentClassifier
from edgerf.models import BUILTIN_DIR
from edgerf.checkpoint import Checkpoint
from edgerf.cli import app
from edgerf.runtime.errors import ArtifactError, DataError, EdgerfError
from edgerf.export.pipeline import ExportConfig, export_checkpoint

FAST = BenchConfig(seconds=0.05, windows=5, warmup_s=0.02, steps=600, rss=False)


def test_latency_stats_on_synthetic_timings():
    ns = np.arange(1, 101) * 1000          # 1..100 us
    s = LatencyStats.of(ns)
    assert s.n == 100 and s.median_us == pytest.approx(50.5) and s.max_us == 100.0
    assert s.p90_us == pytest.approx(90.1) and s.p99_us == pytest.approx(99.01)
    assert s.mean_us == pytest.approx(50.5)


def test_measure_latency_windows_and_warmup():
    calls = []
    lat = measure_latency(lambda i: calls.append(i), windows=5, window_s=0.01, warmup_s=0.005)
    assert len(lat.windows) == 5 and all(w.n > 0 for w in lat.windows)
    assert lat.overall.n == sum(w.n for w in lat.windows) == len(lat.samples_ns)
    assert len(calls) > lat.overall.n                      # warm-up calls are not timed
    assert calls == list(range(len(calls)))                 # step index runs on across windows
    with pytest.raises(ValueError):
        measure_latency(lambda i: None, windows=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, sfmnist):
    d = tmp_path_factory.mktemp("bench")
    model = RecurrentClassifier(ModelConfig(family="gru", hidden=16)).eval()
    checkpoint.save(d / "m.pt", Checkpoint(model=model, task=sfmnist.spec(), training={}))
    export_checkpoint(d / "m.pt", d, ExportConfig(int8=True, parity_steps=1000, calibration_steps=2000,
                                                   check_steps=1000, bundle_steps=800))
    return d


def test_bench_report_schema(model_dir, tmp_path):
    from edgerf.bench import render
    run = run_bench([], model_dir / "m.pt", FAST, progress=False)
    rep = run.report
    assert [t["target"] for t in rep["targets"]] == ["torch", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]
    assert rep["reference"].startswith("torch fp32 eager")
    for t in rep["targets"]:
        lat = t["latency"]
        assert len(lat["windows"]) == 5 and lat["overall"]["median_us"] > 0
        assert lat["overall"]["p99_us"] >= lat["overall"]["median_us"]
        assert t["vs_torch"]["median"] > 0 and t["size_bytes"] > 0
        acc = t["accuracy"]
        for k in ("acc_p", "acc_f", "false_alarm", "acc_p_first10", "acc_p_last10", "argmax_agreement",
                  "max_abs_logits_drift"):
            assert 0.0 <= acc[k] <= (1.0 if k != "max_abs_logits_drift" else 10.0), k
    torch_row = rep["targets"][0]
    assert torch_row["vs_torch"]["median"] == 1.0 and torch_row["accuracy"]["argmax_agreement"] == 1.0
    for fp32 in (rep["targets"][1]["accuracy"], rep["targets"][3]["accuracy"]):
        assert fp32["argmax_agreement"] >= 0.999 and fp32["max_abs_logits_drift"] < 1e-3
    assert rep["machine"]["cores"] >= 1 and "onnxruntime" in rep["machine"]["versions"]
    files = render.write_report(run, tmp_path / "r")
    names = {f.name for f in files}
    assert names == {"bench.json", "bench.md", "latency.png", "accuracy_along_stream.png", "stream_excerpt.png"}
    loaded = json.loads((tmp_path / "r" / "bench.json").read_text())
    assert loaded["format"] == "edgerf-bench/1" and loaded["targets"][2]["target"] == "onnx-int8"
    assert "tflite-int8" in render.table(rep)


def test_bench_on_a_device_without_torch_or_data_uses_the_bundle(model_dir, tmp_path):
    code = f"""
        import json
        from pathlib import Path
        from edgerf.bench.run import BenchConfig, run_bench
        run = run_bench([Path({str(model_dir / 'm.onnx')!r}), Path({str(model_dir / 'm.int8.onnx')!r})],
                        cfg=BenchConfig(seconds=0.05, windows=5, warmup_s=0.01, steps=10_000, rss=False),
                        progress=False)
        rep = run.report
        from edgerf.bench.render import write_report
        written = sorted(p.name for p in write_report(run, Path({str(tmp_path / 'rep')!r})))
        assert written == ["bench.json", "bench.md"], written      # no plots without matplotlib
        print(json.dumps({{"ref": rep["reference"], "steps": rep["accuracy_steps"],
                          "targets": [t["target"] for t in rep["targets"]],
                          "agree": rep["targets"][0]["accuracy"]["argmax_agreement"],
                          "drift": rep["targets"][0]["accuracy"]["max_abs_logits_drift"]}}))
    """
    r = run_blocked(code, ("torch", "onnx", "onnxscript", "matplotlib"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ref"].startswith("evaluation bundle m.bundle.npz") and out["steps"] == 800
    assert out["targets"] == ["onnx-fp32", "onnx-int8"]     # no torch on the device
    assert out["agree"] >= 0.999 and out["drift"] < 1e-3     # fp32 graph vs bundled torch logits


def test_bad_inputs(model_dir, tmp_path, monkeypatch):
    with pytest.raises(EdgerfError, match="unknown device"):
        run_bench([model_dir / "m.onnx"], cfg=BenchConfig(device="riscv"), progress=False)
    lonely = tmp_path / "x.onnx"
    lonely.write_bytes(b"\x08\x07")
    with pytest.raises(ArtifactError, match="no verifiable manifest"):
        run_bench([lonely], cfg=FAST, progress=False)
    with pytest.raises(ArtifactError, match="does not exist"):
        run_bench([tmp_path / "nope.onnx"], cfg=FAST, progress=False)
    # a sidecar that does not match the sealed contract (nor the graph)
    m = json.loads((model_dir / "m.onnx.json").read_text())
    m["states"][0]["output"] = "h_next"
    (tmp_path / "w.onnx").write_bytes((model_dir / "m.onnx").read_bytes())
    (tmp_path / "w.onnx.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="disagrees"):
        run_bench([tmp_path / "w.onnx"], cfg=BenchConfig(**{**FAST.__dict__, "accuracy": False}), progress=False)
    # no dataset, no bundle: a clear error; --no-accuracy still benchmarks latency
    (tmp_path / "c.onnx").write_bytes((model_dir / "m.onnx").read_bytes())
    (tmp_path / "c.onnx.json").write_text((model_dir / "m.onnx.json").read_text())
    monkeypatch.setenv("EDGERF_DATA", str(tmp_path))
    with pytest.raises(DataError, match="--no-accuracy"):
        run_bench([tmp_path / "c.onnx"], model_dir / "m.pt", FAST, progress=False)
    rep = run_bench([tmp_path / "c.onnx"], model_dir / "m.pt",
                    BenchConfig(**{**FAST.__dict__, "accuracy": False}), progress=False).report
    assert rep["reference"].startswith("accuracy skipped") and "accuracy" not in rep["targets"][1]


def test_bench_cli(model_dir, tmp_path, monkeypatch):
    r = CliRunner().invoke(app, ["bench", "--ckpt", str(model_dir / "m.pt"), "--seconds", "0.05", "--steps", "500",
                                 "--report", str(tmp_path / "rep"), "-q"])
    assert r.exit_code == 0, r.output
    assert "onnx-int8" in r.stdout and "torch" in r.stdout
    assert (tmp_path / "rep" / "bench.md").exists()
    monkeypatch.setenv("EDGERF_CACHE", str(tmp_path / "empty-cache"))      # arm64 not set up here
    r = CliRunner().invoke(app, ["bench", "--device", "arm64", str(model_dir / "m.onnx"), "-q"])
    assert r.exit_code == 2 and "--setup" in r.output


def test_bench_takes_a_built_in_name_as_stream_and_inspect_do():
    """`edgerf bench kws-gru` benches the keyword built-in (it was "kws-gru does not exist");
    a checkpoint given as an artifact is pointed to --ckpt."""
    quick = ["--seconds", "0.05", "--windows", "1", "--no-rss", "--steps", "300", "-q"]
    r = CliRunner().invoke(app, ["bench", "kws-gru", *quick])
    assert r.exit_code == 0 and "keywords:" in r.stdout and "gsc" in r.stdout, r.output
    for args, says in ((["kws-gru", "default-gru"], "bench it alone"),
                       ([str(BUILTIN_DIR / "kws-gru.pt")], "goes with --ckpt")):
        r = CliRunner().invoke(app, ["bench", *args, *quick])
        assert r.exit_code == 2 and says in r.output, r.output


def test_decision_timing_reads_each_offset_from_the_sample_end():
    """A model right up to each sample's last informative step and uniform (argmax 0) after
    it: full marks at and before the end, chance after; its peak is inside the sample."""
    from edgerf.bench.studies.decision_timing import timing
    from edgerf.data import concat_samples

    samples = [np.zeros((6, 2), np.float32)] * 5
    stream = concat_samples(samples, [1, 2, 1, 2, 1], [np.zeros((10, 2), np.float32)] * 5)
    stream = stream.head(int(stream.starts[-1]))                    # ends in a gap: 4 samples
    logits = np.zeros((len(stream), 3), np.float32)                 # uniform: argmax 0, wrong
    for a, b, y in zip(stream.starts, stream.ends, stream.sample_labels):
        logits[a:b + 1, y] = np.linspace(1, 3, b + 1 - a)          # right, most sure at the end
    row = timing(logits, stream)
    assert row["at_+0"] == row["at_-1"] == row["at_-4"] == row["at_peak"] == 1.0
    assert row["at_+1"] == row["at_+4"] == 0.0
    assert row["false_alarm"] == 0.0                                # uniform in the gaps: silent


def test_the_grid_summarises_each_row_over_its_seeds():
    from edgerf.bench.studies.train_grid import seed_summary

    runs = [{"model": "gru", "loss": "reset-free", "eval": "no-reset", "seed": s, "acc_p": a, "false_alarm": 0.01}
            for s, a in ((0, 0.80), (1, 0.86), (2, 0.83))]
    single = [{"model": "rnn", "loss": "reset-free", "eval": "no-reset", "seed": 0, "acc_p": 0.7, "false_alarm": 0}]
    table = seed_summary(runs + single)
    row = next(line for line in table.splitlines() if line.startswith("| gru"))
    assert "0,1,2" in row and "0.8300 [0.8000, 0.8600]" in row
    assert "| rnn" not in table                     # one seed: nothing to summarise
    assert seed_summary(single) == ""


def test_bench_levels_sweeps_gain_and_snr_on_an_audio_model(tmp_path):
    """`edgerf bench --levels`: the keyword model at each speech gain and SNR, in the report and a plot."""
    from edgerf.bench.levels import GAINS_DB, SNRS_DB
    from edgerf.models import builtin_artifact
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["bench", str(builtin_artifact("kws-gru")), "--levels", "--steps", "600",
                                 "--no-rss", "--seconds", "0.05", "--windows", "1", "--report", str(out), "-q"])
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "bench.json").read_text())["levels"]
    assert [(x["sweep"], x["db"]) for x in rows] == [("gain", g) for g in GAINS_DB] + [("snr", s) for s in SNRS_DB]
    loud, quiet = (next(x for x in rows if x["sweep"] == "gain" and x["db"] == d) for d in (0, -30))
    assert loud["samples"] > 0 and quiet["hits"] <= loud["hits"] + 2          # words 30 dB down are harder, not easier
    assert (out / "levels.png").stat().st_size > 10_000 and "At other speech levels" in (out / "bench.md").read_text()
    # an image model has no speech level to sweep
    r = CliRunner().invoke(app, ["bench", "--levels", "--steps", "300", "--no-rss", "--seconds", "0.05",
                                 "--windows", "1", "-q"])
    assert r.exit_code == 2 and "audio models" in r.output


def test_a_partial_rerun_replaces_only_the_rows_it_measured():
    from edgerf.bench.report import merge_family_rows, merge_rows
    old = [{"m": "a", "v": 1}, {"m": "b", "v": 1}, {"m": "b", "v": 2}, {"m": "c", "v": 1}]
    new = [{"m": "b", "v": 9}, {"m": "d", "v": 9}]
    assert merge_rows(old, new, key=lambda r: r["m"]) == [{"m": "a", "v": 1}, {"m": "b", "v": 9}, {"m": "c", "v": 1},
                                                          {"m": "d", "v": 9}]
    fam = merge_family_rows([{"family": "lif"}, {"family": "rnn", "v": 1}], [{"family": "rnn", "v": 2}])
    assert fam == [{"family": "rnn", "v": 2}, {"family": "lif"}]


def test_a_result_stem_keeps_its_dots():
    """`--out runs/kws/a.val` writes a.val.json and a.val.md, not a.json over another run's."""
    from edgerf.bench.report import result_file
    assert result_file("runs/kws/a.val", ".json") == Path("runs/kws/a.val.json")
    assert result_file(Path("results/int8"), ".md") == Path("results/int8.md")
    assert result_file("results/int8.md", ".json") == Path("results/int8.json")


def test_a_merged_targets_result_names_the_machine_of_each_run(tmp_path):
    """`targets --merge` keeps the other models' rows as measured and says which machine
    measured them: a re-run on another host does not relabel the earlier rows."""
    from edgerf.bench.studies.targets import _write, merged
    xeon, epyc = {"cpu": "Xeon", "arch": "x86_64"}, {"cpu": "EPYC", "arch": "x86_64"}
    row = {"model": "a", "artifact": "a.tflite", "target": "litert", "precision": "fp32"}
    old = {"command": "targets --models a", "machine": xeon, "steps": 10, "rows": [row],
           "streams": {"a": {"steps": 10, "samples": 1}}}
    new = {"command": "targets --models b --merge", "commands": ["targets --models b --merge"], "machine": epyc,
           "machines": {"targets --models b --merge": epyc}, "steps": 10, "rows": [row | {"model": "b"}],
           "streams": {"b": {"steps": 20, "samples": 2}}}
    result = merged(old, new)
    assert [r["model"] for r in result["rows"]] == ["a", "b"] and set(result["streams"]) == {"a", "b"}
    _write(tmp_path / "targets", result)
    head = (tmp_path / "targets.md").read_text().splitlines()[2]
    assert "`targets --models a` on Xeon (x86_64) then `targets --models b --merge` on EPYC (x86_64)" in head
    again = merged(result, new)        # the same run repeated: named once
    assert again["commands"] == ["targets --models a", "targets --models b --merge"]


def test_an_artifact_named_twice_is_benched_once():
    """The same file by two paths (a glob beside a path to it) gave two rows of one target,
    the report's rows no longer telling one artifact from another."""
    quick = ["--seconds", "0.05", "--windows", "1", "--no-rss", "--steps", "300", "-q"]
    a = BUILTIN_DIR / "kws-gru.onnx"
    r = CliRunner().invoke(app, ["bench", str(a), str(a.parent / ".." / "models" / a.name), *quick])
    assert r.exit_code == 0, r.output
    assert sum(line.split()[:2] == ["onnx-fp32", "fp32"] for line in r.stdout.splitlines() if line) == 1, r.stdout
