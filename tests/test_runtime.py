"""The device-side runtime against the reference path, its watchdog and persistence."""


import numpy as np
import pytest

from conftest import run_blocked
from edgerf import checkpoint
from edgerf.cells import ModelConfig, RecurrentClassifier
from edgerf.checkpoint import Checkpoint
from edgerf.runtime.errors import ArtifactError
from edgerf.export.parity import torch_trajectory
from edgerf.export.pipeline import ExportConfig, export_checkpoint
from edgerf.runtime import EventDetector, FrameError, StateError, StepModel

QUICK = ExportConfig(int8=True, parity_steps=1_000, calibration_steps=3_000, check_steps=1_000, bundle_steps=1_000)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small GRU and an SSM exported fp32 + int8 (states calibrated on real rows)."""
    from edgerf.tasks import get_task
    task = get_task("sfmnist")
    d = tmp_path_factory.mktemp("rt")
    out = {}
    for fam, seed in (("gru", 1), ("ssm", 2)):
        import torch
        torch.manual_seed(seed)
        model = RecurrentClassifier(ModelConfig(family=fam, hidden=24)).eval()
        checkpoint.save(d / f"{fam}.pt", Checkpoint(model=model, task=task.spec(), training={}))
        export_checkpoint(d / f"{fam}.pt", d, QUICK)
        out[fam] = (model, d)
    return out


@pytest.mark.parametrize("family", ["gru", "ssm"])
@pytest.mark.parametrize("artifact", ["onnx", "int8.onnx"])
def test_runtime_matches_reference_over_a_real_stream(exported, test_stream, family, artifact):
    model, d = exported[family]
    rt = StepModel.load(d / f"{family}.{artifact}")
    logits = rt.run(test_stream.x)
    ref, _ = torch_trajectory(model, test_stream.x)
    if artifact == "onnx":
        np.testing.assert_allclose(logits, ref, atol=1e-3, rtol=1e-3)
    else:  # the int8 artifact: against ONNX Runtime driven by hand (session.run, state fed back)
        from edgerf.runtime.backends import ort_session
        sess, h, ref8 = ort_session(d / f"{family}.int8.onnx"), None, []
        names = list(model.state_names)
        h = [np.zeros((1, n), np.float32) for n in model.state_sizes()]
        for t in range(len(test_stream)):
            out = sess.run(["logits"] + [f"{n}_out" for n in names],
                           {"x": test_stream.x[t:t + 1], **{f"{n}_in": v for n, v in zip(names, h)}})
            ref8.append(out[0][0])
            h = out[1:]
        np.testing.assert_array_equal(logits, np.stack(ref8))
    assert rt.steps == len(test_stream) and rt.health == {"bad_frames": 0, "state_restores": 0}


def test_batch_of_streams_equals_separate_streams(exported, test_stream):
    _, d = exported["gru"]
    x = test_stream.x[:300]
    y = test_stream.x[300:600]
    a, b = StepModel.load(d / "gru.onnx").run(x), StepModel.load(d / "gru.onnx").run(y)
    both = StepModel.load(d / "gru.onnx", batch=2)
    out = np.stack([both.step(np.stack([x[t], y[t]])) for t in range(300)])    # [T, 2, C]
    np.testing.assert_allclose(out[:, 0], a, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], b, atol=1e-6)


def test_bad_frames_never_reach_the_state(exported, test_stream):
    _, d = exported["gru"]
    rt = StepModel.load(d / "gru.onnx")
    rt.run(test_stream.x[:50])
    before = rt.state
    for bad in (np.full(28, np.nan, np.float32), np.r_[np.zeros(27), np.inf].astype(np.float32),
                np.zeros(27, np.float32), np.zeros((2, 28), np.float32)):
        with pytest.raises(FrameError, match="rejected"):
            rt.step(bad)
        np.testing.assert_array_equal(rt.state["l0_h"], before["l0_h"])
    assert rt.health["bad_frames"] == 4 and rt.steps == 50
    skip = StepModel.load(d / "gru.onnx", on_bad_frame="skip")
    assert skip.step(np.full(28, np.nan, np.float32)) is None and skip.steps == 0
    assert skip.health["bad_frames"] == 1


def test_corrupted_state_is_restored_from_snapshot(exported, test_stream):
    _, d = exported["ssm"]
    rt = StepModel.load(d / "ssm.onnx", check_every=8)
    ref = StepModel.load(d / "ssm.onnx", check_every=8)
    rt.run(test_stream.x[:64])
    ref.run(test_stream.x[:64])
    good = rt.state
    rt.backend.read_state()[0][0, 3] = np.nan          # a bit flip / runaway value inside the interpreter
    for t in range(64, 71):
        rt.step(test_stream.x[t])
    assert rt.health["state_restores"] == 0     # not yet checked: checks run every 8 steps
    rt.step(test_stream.x[71])
    assert rt.health["state_restores"] == 1
    np.testing.assert_array_equal(rt.state["l0_h"], good["l0_h"])
    assert np.isfinite(rt.run(test_stream.x[72:200])).all()
    # far outside the calibrated range (but finite): caught at the next range check
    lo, hi = rt.manifest["states"][0]["range"]
    rt.backend.read_state()[0][:] = hi + 50 * (hi - lo)
    for t in range(200, 208):
        rt.step(test_stream.x[t])
    assert rt.health["state_restores"] == 2
    assert rt.state["l0_h"].max() <= hi + (hi - lo)


@pytest.mark.parametrize("name", ["kws-gru", "default-gru"])
@pytest.mark.parametrize("suffix", [".int8.tflite", ".tflite", ".int8.onnx", ".onnx"])
def test_step_many_is_step_frame_by_frame_on_every_target(name, suffix):
    """The chunk path (frames checked once a chunk, the backend's own loop) gives step's
    logits, next states and step count bit for bit on every installed target, the watchdog
    checking inside chunks at step's steps."""
    from pathlib import Path

    from edgerf.models import BUILTIN_DIR
    from edgerf.runtime.targets import installed
    with np.load(BUILTIN_DIR / f"{name}.bundle.npz") as z:
        x = np.ascontiguousarray(z["x"][:150], np.float32)
    chunks = np.split(x, np.cumsum([1, 2, 5, 7, 13, 40]))          # 1..82 frames, across checks
    for target in installed(Path(suffix).suffix):
        ref = StepModel.load(BUILTIN_DIR / f"{name}{suffix}", target=target, check_every=8)
        got = StepModel.load(BUILTIN_DIR / f"{name}{suffix}", target=target, check_every=8)
        want = ref.run(x)
        parts = [got.step_many(c) for c in chunks]
        assert all(stepped is None for _, stepped in parts)
        np.testing.assert_array_equal(np.concatenate([lg for lg, _ in parts]), want, err_msg=target)
        for k, v in ref.state.items():
            np.testing.assert_array_equal(got.state[k], v, err_msg=target)
        assert got.steps == ref.steps == len(x) and got.health == ref.health


def test_step_many_with_a_bad_frame_raises_or_skips_as_step_does():
    from edgerf.models import BUILTIN_DIR
    path = BUILTIN_DIR / "default-gru.onnx"
    with np.load(BUILTIN_DIR / "default-gru.bundle.npz") as z:
        x = np.array(z["x"][:10], np.float32)
    x[4] = np.nan
    skip = StepModel.load(path, on_bad_frame="skip")
    logits, stepped = skip.step_many(x)
    assert stepped.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9] and skip.steps == 9 and skip.health["bad_frames"] == 1
    np.testing.assert_array_equal(logits, StepModel.load(path).run(x[stepped]))
    raising = StepModel.load(path)
    with pytest.raises(FrameError, match="NaN"):
        raising.step_many(x)
    assert raising.steps == 4                  # the frames before the bad one stepped, as with step
    with pytest.raises(FrameError, match="shape"):
        raising.step_many(np.zeros((3, raising.features + 1), np.float32))
    assert raising.steps == 4
    with pytest.raises(ValueError, match="one stream"):
        StepModel.load(path, batch=2).step_many(np.zeros((3, 28), np.float32))


def test_state_save_load_round_trip_and_refusals(exported, test_stream, tmp_path):
    _, d = exported["gru"]
    a = StepModel.load(d / "gru.onnx")
    a.run(test_stream.x[:100])
    a.save_state(tmp_path / "s.npz")
    cont_a = a.run(test_stream.x[100:200])
    b = StepModel.load(d / "gru.int8.onnx")   # same checkpoint, other artifact: same state contract
    b.load_state(tmp_path / "s.npz")
    assert b.steps == 100
    c = StepModel.load(d / "gru.onnx")
    c.load_state(tmp_path / "s.npz")
    np.testing.assert_array_equal(c.run(test_stream.x[100:200]), cont_a)   # resumes exactly
    foreign = StepModel.load(exported["ssm"][1] / "ssm.onnx")
    with pytest.raises(StateError, match="another model"):
        foreign.load_state(tmp_path / "s.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(StateError, match="not a readable"):
        a.load_state(tmp_path / "junk.npz")
    with pytest.raises(StateError, match="no saved state"):
        a.load_state(tmp_path / "none.npz")


def test_artifact_errors(exported, tmp_path):
    _, d = exported["gru"]
    with pytest.raises(ArtifactError, match="does not exist"):
        StepModel.load(tmp_path / "x.onnx")
    lonely = tmp_path / "lonely.onnx"
    import onnx
    proto = onnx.load(str(d / "gru.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(lonely))
    with pytest.raises(ArtifactError, match="no verifiable manifest"):
        StepModel.load(lonely)
    # a manifest that names tensors the graph does not have
    import json
    m = json.loads((d / "gru.onnx.json").read_text())
    m["states"][0]["input"] = "hidden_in"
    (tmp_path / "g.onnx").write_bytes((d / "gru.onnx").read_bytes())
    (tmp_path / "g.onnx.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="disagrees"):
        StepModel.load(tmp_path / "g.onnx")


def test_features_equal_training_features(exported, sfmnist):
    _, d = exported["gru"]
    rt = StepModel.load(d / "gru.onnx")
    images, _ = sfmnist.split_arrays("test")
    np.testing.assert_array_equal(rt.featurize(images[0]), sfmnist.normalise(images[0]))


@pytest.mark.parametrize("bad", [{"window": 0}, {"window": -3}, {"window": 2.5}, {"window": True},
                                 {"merge": -1}, {"min_steps": 0}, {"threshold": 1.0},
                                 {"window": 10 ** 11}])
def test_event_detector_refuses_what_it_cannot_mean(bad):
    """A smoothing window of no steps (or of terabytes), a negative merge, no minimum run:
    refused, not clamped (a window of 10^11 steps ended in numpy's MemoryError traceback)."""
    args = {"threshold": 0.8, "window": 3, "min_steps": 1, "merge": 0} | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        EventDetector(["a", "b"], **args)


def test_event_detector():
    det = EventDetector(["a", "b", "c"], threshold=0.8, window=2)
    u = np.full(3, 1 / 3)
    hot = np.array([0.02, 0.96, 0.02])
    seq = [u, u, hot, hot, hot, u, u, u]
    events = [e for p in seq if (e := det.update(p)) is not None]
    assert len(events) == 1
    e = events[0]
    # smoothed over 2 steps: above 0.8 only at t=3 and t=4 (t=2 and t=5 average with uniform)
    assert (e.name, e.start, e.end) == ("b", 3, 4) and e.confidence == pytest.approx(0.96)
    det.update(hot), det.update(hot)
    assert det.flush().label == 1


def test_runtime_works_without_torch_onnx_or_typer(exported, test_stream, tmp_path):
    _, d = exported["gru"]
    np.save(tmp_path / "x.npy", test_stream.x[:200])
    code = f"""
        import sys
        import numpy as np
        from edgerf.runtime import StepModel, EventDetector
        m = StepModel.load({str(d / 'gru.int8.onnx')!r})
        logits = m.run(np.load({str(tmp_path / 'x.npy')!r}))
        m.save_state({str(tmp_path / 'st.npz')!r}); m.load_state({str(tmp_path / 'st.npz')!r})
        assert logits.shape == (200, 10) and np.isfinite(logits).all()
        assert not any(v is not None and k.split('.')[0] in ('torch', 'onnx', 'typer') for k, v in sys.modules.items())
        print('ok')
    """
    r = run_blocked(code, ("torch", "onnx", "typer", "onnxscript"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_stream_cli_prints_events_and_persists_state(exported, sfmnist, tmp_path):
    import json

    from typer.testing import CliRunner

    from edgerf.cli import app
    _, d = exported["gru"]
    s = sfmnist.stream("test", 6, seed=4)
    np.save(tmp_path / "f.npy", s.x)
    # an untrained model is never confident: put the threshold at its 80th percentile of
    # smoothed-free top probability so some steps must fire
    top = StepModel.probs(StepModel.load(d / "gru.onnx").run(s.x)).max(-1)
    thr = float(np.quantile(top, 0.8))
    r = CliRunner().invoke(app, ["stream", str(d / "gru.onnx"), str(tmp_path / "f.npy"), "--threshold", str(thr),
                                 "--window", "1", "--state", str(tmp_path / "st.npz")])
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert events and all(set(e) == {"label", "name", "start", "end", "confidence"} for e in events)
    assert all(0 <= e["start"] <= e["end"] < len(s) and e["confidence"] >= thr for e in events)
    fired = np.zeros(len(s), bool)
    for e in events:
        fired[e["start"]:e["end"] + 1] = True
    np.testing.assert_array_equal(fired, top >= thr)   # window 1: events are exactly the steps above
    assert (tmp_path / "st.npz").exists()
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 27), np.float32))
    r = CliRunner().invoke(app, ["stream", str(d / "gru.onnx"), str(bad)])
    assert r.exit_code == 2 and "rejected" in r.output


def _naive_events(probs, thr, window, min_steps, merge=0):
    """The detector's rule written out plainly: smoothed top class per step, maximal runs,
    runs within ``merge`` steps of each other joined under the most confident one's label."""
    C = probs.shape[1]
    hist = [np.full(C, 1.0 / C)] * window + list(probs.astype(np.float64))
    events, run = [], None
    for t in range(len(probs)):
        s = np.mean(hist[t + 1:t + 1 + window], axis=0)
        lab, p = int(s.argmax()), float(s.max())
        if run and (p < thr or lab != run[0]):
            events.append(run)
            run = None
        if p >= thr:
            run = [lab, t, t, p] if run is None else [run[0], run[1], t, max(run[3], p)]
    events += [run] if run else []
    out = []
    for r in (e for e in events if e[2] - e[1] + 1 >= min_steps):
        if out and r[1] - out[-1][2] <= merge:
            keep = out[-1] if out[-1][3] >= r[3] else r
            out[-1] = [keep[0], out[-1][1], r[2], keep[3]]
        else:
            out.append(list(r))
    return [(e[0], e[1], e[2]) for e in out]


def test_event_detection_is_the_same_step_by_step_in_any_chunks_and_at_once():
    from edgerf.runtime.events import detect_events
    rng = np.random.default_rng(3)
    classes = [f"c{k}" for k in range(5)]
    # runs of confident steps of random classes between flat noise, like a keyword stream
    probs = np.full((3000, 5), 0.2, np.float32)
    for s in rng.integers(0, 2950, 60):
        p = np.full(5, 0.01, np.float32)
        p[rng.integers(5)] = 0.96
        probs[s:s + rng.integers(1, 40)] = p
    probs += rng.uniform(0, 0.05, probs.shape).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    for thr, window, min_steps, merge in ((0.9, 3, 1, 0), (0.7, 1, 1, 0), (0.8, 5, 3, 0), (0.7, 3, 1, 12)):
        ref = _naive_events(probs, thr, window, min_steps, merge)
        assert len(ref) > 20
        det = EventDetector(classes, thr, window, min_steps, merge=merge)
        one = [e for p in probs if (e := det.update(p)) is not None]
        one += [e] if (e := det.flush()) is not None else []
        det, chunked, t = EventDetector(classes, thr, window, min_steps, merge=merge), [], 0
        while t < len(probs):
            n = int(rng.integers(0, 50))
            chunked += det.update_many(probs[t:t + n])
            t += n
        chunked += [e] if (e := det.flush()) is not None else []
        for got in (one, chunked, detect_events(probs, classes, thr, window, min_steps, merge=merge)):
            assert [(e.label, e.start, e.end) for e in got] == ref
        assert np.allclose([e.confidence for e in chunked], [e.confidence for e in one], atol=1e-6)


def test_keyword_metrics_count_hits_misses_and_false_accepts():
    from edgerf.data.stream import concat_samples
    from edgerf.runtime.metrics import keyword_metrics
    from edgerf.runtime.events import Event
    classes = ["yes", "no", "_unknown_"]
    s = concat_samples([np.zeros((10, 2), np.float32)] * 3, [0, 1, 2], [np.zeros((20, 2), np.float32)] * 3)
    # samples at 20..29 (yes), 50..59 (no), 80..89 (_unknown_); 10 ms steps
    events = [Event(0, "yes", 25, 28, 0.95),        # hit
              Event(0, "yes", 52, 55, 0.95),        # wrong class on "no": false accept, and "no" is missed
              Event(2, "_unknown_", 82, 85, 0.95),  # never an accept
              Event(1, "no", 84, 86, 0.95)]         # keyword during _unknown_: false accept
    m = keyword_metrics(events, s, classes, 0.01, tolerance_s=0.05)
    assert (m["keywords"], m["hits"], m["misses"], m["false_accepts"]) == (2, 1, 1, 2)
    assert m["fa_per_hour"] == pytest.approx(2 / (len(s) * 0.01 / 3600))
    # "yes" ends at step 29; its event opens at 25 (decided at the end of that step, 40 ms before
    # the word ends) and closes at 28 (printed at the end of step 29, when the word ends)
    assert m["latency_ms"] == {"median": pytest.approx(-40), "p90": pytest.approx(-40), "n": 1}
    assert m["reported_latency_ms"]["median"] == pytest.approx(0)


def test_an_integer_state_that_cannot_leave_its_range_is_not_watched(exported, test_stream):
    """The full-int8 TFLite GRU carries its state as int8: whatever is written into it, every
    value it can hold is inside the healthy range, so the periodic check has nothing to
    find and is skipped; a float state is still watched."""
    from edgerf.models import BUILTIN_DIR

    q = StepModel.load(BUILTIN_DIR / "default-gru.int8.tflite")
    assert not q.watched and StepModel.load(BUILTIN_DIR / "default-gru.tflite").watched
    assert StepModel.load(exported["gru"][1] / "gru.int8.onnx").watched      # ONNX feeds float state back
    for extreme in (1e30, -1e30):
        q.set_state({n: np.full(v.shape, extreme, np.float32) for n, v in q.state.items()})
        q.run(test_stream.x[:40])
        assert q._unhealthy_reason(q.state) is None
    assert q.health["state_restores"] == 0


@pytest.mark.parametrize("kw", [{"batch": 0}, {"batch": -1}, {"batch": 2.5}, {"batch": 10 ** 7}, {"threads": 0},
                                {"threads": 10 ** 6}])
def test_a_batch_or_thread_count_that_cannot_mean_anything_is_refused_by_name(kw):
    """batch 0 loaded a model of no streams, -1 failed inside LiteRT, 2.5 was a TypeError."""
    from edgerf.models import builtin_artifact
    with pytest.raises(ValueError, match=next(iter(kw))):
        StepModel.load(builtin_artifact("default-gru"), **kw)
