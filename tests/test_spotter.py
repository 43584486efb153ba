"""The device's audio-to-events path (Spotter): per chunk, and the same as stepping by hand."""

import numpy as np
import pytest

from edgerf.models import DEMO_RECORDING, builtin_artifact
from edgerf.runtime import EventDetector, Spotter, StepModel
from edgerf.runtime.audio import read_wav


def _by_hand(pcm):
    """The plain loop a user would write: featurize, step, softmax, detect, one frame at a time."""
    m = StepModel.load(builtin_artifact("kws-gru"))
    det = EventDetector(m.classes, m.threshold, m.window, keywords=m.keywords, merge=m.merge)
    events = [e for f in m.featurize(pcm) if (e := det.update(m.probs(m.step(f)))) is not None]
    return events + ([e] if (e := det.flush()) is not None else [])


def test_spotter_gives_the_per_frame_loop_s_events_for_any_chunking():
    pcm = read_wav(DEMO_RECORDING)
    ref = _by_hand(pcm)
    assert len(ref) >= 5
    rng = np.random.default_rng(0)
    for sizes in ([len(pcm)], [160], [1600], list(rng.integers(1, 9000, 400))):
        sp = Spotter(StepModel.load(builtin_artifact("kws-gru")), timed=True)
        got, k, i = [], 0, 0
        while k < len(pcm):
            n = int(sizes[i % len(sizes)])
            got += sp.feed(pcm[k:k + n])
            k, i = k + n, i + 1
        got += sp.flush()
        assert [(e.name, e.start, e.end) for e in got] == [(e.name, e.start, e.end) for e in ref]
        assert np.allclose([e.confidence for e in got], [e.confidence for e in ref], atol=1e-6)
        assert set(sp.seconds) >= {"features", "model", "probs", "detection"} and sp.seconds["model"] > 0


def test_spotter_skips_bad_frames_without_a_step_and_keeps_going():
    m = StepModel.load(builtin_artifact("default-gru"), on_bad_frame="skip")
    kept = []
    sp = Spotter(m, keep=lambda f, p: kept.append((f, p)))
    frames = np.zeros((10, m.features), np.float32)
    frames[3] = np.nan
    sp.feed_frames(frames)
    assert m.steps == 9 and m.health["bad_frames"] == 1
    # its time passes: the frame is kept in place, with uniform probabilities (no evidence)
    assert kept[0][0].shape == (10, m.features) and kept[0][1].shape == (10, len(m.classes))
    assert np.allclose(kept[0][1][3], 1 / len(m.classes)) and not np.allclose(kept[0][1][2], 1 / len(m.classes))


@pytest.mark.parametrize("mode", ["skip", "raise"])
def test_events_after_a_refused_chunk_keep_their_place_in_the_stream(mode):
    """A corrupted chunk (a NaN sample from a driver) is refused, or its frames skipped; the
    events after it must stay where they are in the stream: the detector's clock counted
    steps taken, so every later event came one step early per frame refused."""
    pcm = read_wav(DEMO_RECORDING)
    hops = (50, 120)                                     # 5 s and 12 s in: within the recording's words

    def events(corrupt: bool):
        m = StepModel.load(builtin_artifact("kws-gru"), on_bad_frame=mode)
        sp, got = Spotter(m), []
        for k in range(0, len(pcm), 1600):
            x = pcm[k:k + 1600].copy()
            if corrupt and k // 1600 in hops:
                x[800] = np.nan
            try:
                got += sp.feed(x)
            except ValueError:
                assert mode == "raise"
        return [(e.name, e.start) for e in got + sp.flush()], m.health["bad_frames"]

    (clean, _), (hurt, refused) = events(False), events(True)
    assert refused >= 2
    step_s = StepModel.load(builtin_artifact("kws-gru")).manifest["frame"]["period_s"]
    far = [e for e in clean if all(abs(e[1] * step_s - h / 10) > 2.0 for h in hops)]     # 2 s from a refusal
    assert len(far) >= 5 and set(far) <= set(hurt), (clean, hurt)


@pytest.mark.parametrize("pcm,says", [
    (np.ones(1600, np.int16), "scale 16-bit samples by 1/32768"),
    (np.zeros((1600, 2), np.float32), "one channel"),
    (None, "float samples"),
    (np.zeros(1600, np.complex64), "float samples"),
])
def test_pcm_a_driver_buffer_gets_wrong_is_refused_with_what_to_do(pcm, says):
    """int16 samples passed as they come (1000 where 0.03 was meant), two channels raveled into
    one, no array at all: refused, the state untouched, never turned into frames."""
    m = StepModel.load(builtin_artifact("kws-gru"))
    spotter = Spotter(m)
    with pytest.raises(ValueError, match=says):
        spotter.feed(pcm)
    assert m.steps == 0 and spotter.feed(np.zeros(16000, np.float32)) == [] and m.steps > 0


def _graph_and_target():
    """Each built-in graph with each installed target of its format."""
    from edgerf.runtime.targets import installed
    for artifact in ("kws-gru.int8.tflite", "kws-gru.int8.onnx", "kws-gru.tflite", "kws-gru.onnx"):
        for target in installed("." + artifact.rsplit(".", 1)[1]):
            yield artifact, target


@pytest.mark.parametrize("artifact,target", list(_graph_and_target()))
def test_the_graph_computes_the_probabilities_on_every_target(artifact, target):
    """The exported graph's last output is softmax(logits), computed by the interpreter (a
    float op after the int8 graph's DEQUANTIZE): what the Spotter reads instead of a numpy
    softmax per chunk; on every target it is the softmax of the same run's logits."""
    from edgerf.models import BUILTIN_DIR
    from edgerf.runtime.bundle import bundle_path, read
    from edgerf.runtime.metrics import softmax

    path = BUILTIN_DIR / artifact
    x = read(bundle_path(path)).stream.x[:200].astype(np.float32)
    m = StepModel.load(path, target=target)
    assert m.graph_probs == (target != "onnx-ref")          # the reference evaluator: from its logits
    probs, _ = m.step_many(x, probs=True)
    logits, _ = StepModel.load(path, target=target).step_many(x)
    np.testing.assert_allclose(probs, softmax(logits), rtol=1e-5, atol=1e-6)
    assert probs.argmax(1).tolist() == logits.argmax(1).tolist()


def test_an_artifact_exported_before_graphs_had_probabilities_still_spots():
    """default-gru ships as exported before the probabilities output: the runtime computes
    the softmax itself, and step_many(probs=True) gives what the logits' softmax gives."""
    from edgerf.runtime.metrics import softmax

    m = StepModel.load(builtin_artifact("default-gru"))
    assert "probs" not in m.manifest["outputs"] and not m.graph_probs
    x = np.random.default_rng(0).standard_normal((50, m.features)).astype(np.float32)
    probs, _ = m.step_many(x, probs=True)
    logits, _ = StepModel.load(builtin_artifact("default-gru")).step_many(x)
    np.testing.assert_array_equal(probs, softmax(logits))


def test_16_bit_sample_values_passed_as_floats_are_refused_not_classified():
    """`np.frombuffer(buf, np.int16).astype(np.float32)` without the 1/32768: frames 90 dB over
    anything trained on, classified silently (events or none, all wrong). Refused per chunk,
    nothing of the chunk consumed; audio up to 4x full scale (square waves, the demo x4) passes."""
    pcm = read_wav(DEMO_RECORDING)
    m = StepModel.load(builtin_artifact("kws-gru"))
    with pytest.raises(ValueError, match="32768"):
        m.featurize(pcm[:16000] * 32768)
    with pytest.raises(ValueError, match="32768"):
        Spotter(m).feed(np.random.default_rng(0).normal(0, 30, 16000).astype(np.float32))   # quiet, still refused
    fresh = StepModel.load(builtin_artifact("kws-gru"))
    np.testing.assert_array_equal(m.featurize(pcm[:16000]), fresh.featurize(pcm[:16000]))
    square = np.sign(np.sin(np.arange(16000) * 2 * np.pi * 1000 / 16000)).astype(np.float32)
    for x in (square, 4 * square, 4 * pcm):
        assert len(StepModel.load(builtin_artifact("kws-gru")).featurize(x)) > 0


def test_audio_fed_to_a_model_of_other_frames_is_refused_saying_what_it_takes():
    """Spotter.feed on the image built-in read the PCM as one pixel row of 1,600 values and
    failed on its shape; it says the model takes image rows, which feed_frames takes."""
    m = StepModel.load(builtin_artifact("default-gru"))
    with pytest.raises(ValueError, match="image-row frames: give them to feed_frames"):
        Spotter(m).feed(np.zeros(1600, np.float32))
    assert Spotter(m).feed_frames(np.zeros((5, 28), np.float32)) == [] and m.steps == 5
