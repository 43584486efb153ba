"""Speech Commands: WAV reading, speaker split, features, activity mask, a tiny training run."""

import json
import shutil
import wave

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FULL_DATA, user_dataset
from edgerf import checkpoint
from edgerf.cli import app
from edgerf.data import speech
from edgerf.data.source import locate
from edgerf.runtime.errors import DataError
from edgerf.runtime.features import HOP, N_FFT, N_MELS, WIN, ActivityMask, LogMelStream, mel_filterbank
from edgerf.tasks import get_task


def _wav(path, x, rate=16000, width=2):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes((np.asarray(x) * 32767).astype("<i2").tobytes() if width == 2 else bytes(len(x)))


def test_a_wav_file_reads_as_the_same_bytes_read_on_stdin(tmp_path):
    """Files and stdin walk a WAV's chunks with one parser: an extensible header (what sox and
    ffmpeg write for some formats), a LIST chunk before the data and a data size left unknown
    by a writer that streamed read as the plain file does (the file reader refused the first
    as "unknown format: 65534" while stdin took it); other formats are refused by what they
    hold."""
    import struct

    x = np.sin(np.linspace(0, 100, 16000)) * 0.5
    pcm = (x * 32767).astype("<i2").tobytes()

    def wav(code=1, bits=16, extensible=False, extra=b"", size=None):
        fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else code, 1, 16000, 16000 * bits // 8, bits // 8, bits)
        if extensible:
            fmt += struct.pack("<HHIH", 22, bits, 4, code) + bytes(14)
        body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
                + b"data" + struct.pack("<I", len(pcm) if size is None else size) + pcm)
        return b"RIFF" + struct.pack("<I", len(body)) + body

    _wav(tmp_path / "plain.wav", x)
    want = speech.read_wav(tmp_path / "plain.wav")
    for name, data in (("ext", wav(extensible=True)), ("list", wav(extra=b"LIST\x05\0\0\0abcde\0")),
                       ("streamed", wav(size=0xFFFFFFFF))):
        (tmp_path / f"{name}.wav").write_bytes(data)
        np.testing.assert_array_equal(speech.read_wav(tmp_path / f"{name}.wav"), want)
    for data, said in ((wav(3, 32), "32-bit float"), (wav(3, 32, extensible=True), "32-bit float"),
                       (wav(size=len(pcm) + 2), "header claims"), (wav()[:40], "ends before its data chunk")):
        (tmp_path / "bad.wav").write_bytes(data)
        with pytest.raises(DataError, match=said) as e:
            speech.read_wav(tmp_path / "bad.wav")
        assert "bad.wav" in str(e.value)


def test_read_wav_and_bad_files(tmp_path):
    x = np.sin(np.linspace(0, 100, 16000)) * 0.5
    _wav(tmp_path / "ok.wav", x)
    np.testing.assert_allclose(speech.read_wav(tmp_path / "ok.wav"), x, atol=1 / 16000)
    _wav(tmp_path / "rate.wav", x, rate=8000)
    with pytest.raises(DataError, match="rate.wav: .* at 8000 Hz; expected 16-bit PCM at 16000 Hz"):
        speech.read_wav(tmp_path / "rate.wav")
    (tmp_path / "text.wav").write_text("hello")
    with pytest.raises(DataError, match="text.wav: not a readable WAV"):
        speech.read_wav(tmp_path / "text.wav")
    _wav(tmp_path / "empty.wav", [])
    with pytest.raises(DataError, match="empty.wav: empty"):
        speech.read_wav(tmp_path / "empty.wav")
    raw = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "trunc.wav").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="trunc.wav: .*[Tt]runcated"):
        speech.read_wav(tmp_path / "trunc.wav")


def test_a_split_with_bad_files_is_refused_naming_every_one(tmp_path):
    for w in ("yes", "no", "up"):
        (tmp_path / w).mkdir()
    _wav(tmp_path / "yes" / "aaaa1111_nohash_0.wav", np.zeros(16000))
    (tmp_path / "no" / "aaaa1111_nohash_1.wav").write_bytes(b"RIFF....broken")
    (tmp_path / "up" / "aaaa1111_nohash_2.wav").write_bytes(b"")
    split = speech.split_of("aaaa1111")
    with pytest.raises(DataError, match=r"(?s)2 file.*nohash_1\.wav.*nohash_2\.wav"):
        speech.load_split(split, tmp_path)
    (tmp_path / "no" / "aaaa1111_nohash_1.wav").unlink()
    (tmp_path / "up" / "aaaa1111_nohash_2.wav").unlink()
    waves, words = speech.load_split(split, tmp_path)
    assert (len(waves), words) == (1, ["yes"])


def test_every_16_bit_sample_reads_as_its_value_over_32768_from_bytes_or_an_array():
    from edgerf.runtime.audio import pcm16_to_float
    every = np.arange(-32768, 32768, dtype=np.int16)
    want = every.astype(np.float64) / 32768.0                  # exact in float32 for every int16
    for got in (pcm16_to_float(every), pcm16_to_float(every.astype("<i2").tobytes())):
        assert got.dtype == np.float32 and np.array_equal(got.astype(np.float64), want)


def test_speaker_split_is_disjoint_and_deterministic():
    root = locate("speech-commands").root
    by_split = {s: {c.speaker for c in speech.list_clips(root, s)} for s in ("train", "val", "test")}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["val"])
    assert not (by_split["val"] & by_split["test"])
    n = {s: len(v) for s, v in by_split.items()}
    assert n["train"] > n["test"] > 0 and n["val"] > 0
    assert speech.speaker_of(root / "_unknown_" / "backward_0c540988_nohash_0.wav.wav", "_unknown_") == "0c540988"
    # SHA-1 of the speaker hash mod 100 (0c540988: bucket 41): the same split on every platform and run
    assert [speech.split_of(k) for k in ("0c540988", "0a7c2a8d", "02ade946")] == ["train", "val", "test"]


def test_log_mel_matches_a_direct_computation_and_streams_in_chunks():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, 16000).astype(np.float32)
    lm, lv = LogMelStream().feed(x)
    assert lm.shape == (1 + (16000 - WIN) // HOP, N_MELS)
    t = 37
    frame = x[t * HOP: t * HOP + WIN]
    window = np.hanning(WIN + 2)[1:-1]
    ref = np.log(np.abs(np.fft.rfft(frame * window, N_FFT)) ** 2 @ mel_filterbank().T + 1e-6)
    np.testing.assert_allclose(lm[t], ref, rtol=1e-4, atol=1e-4)
    assert lv[t] == pytest.approx(np.log10(frame.var() + 1e-10), abs=1e-5)
    s = LogMelStream()
    parts = [s.feed(c)[0] for c in np.split(x, [1, 333, 5000, 5001, 12345])]
    np.testing.assert_allclose(np.concatenate(parts), lm, atol=1e-5)


def test_log_mel_is_bit_for_bit_the_float64_formula_whatever_the_chunking():
    """Training caches these features and the device recomputes them: any change in how they
    are computed (buffers, FFT padding, operation order) must leave every bit as it was, or
    recorded training commands stop reproducing their results."""
    from edgerf.runtime.features import SparseFilterbank
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 0.2, 24000), np.zeros(3000), rng.normal(0, 1e-4, 9000)]).astype(np.float32)
    n = 1 + (len(x) - WIN) // HOP
    frames = np.stack([x[t * HOP: t * HOP + WIN] for t in range(n)])
    window = np.hanning(WIN + 2)[1:-1].astype(np.float32)
    spec = np.fft.rfft((frames * window).astype(np.float64), N_FFT)
    power = spec.real * spec.real + spec.imag * spec.imag
    expected = np.log(SparseFilterbank(mel_filterbank())(power) + 1e-6).astype(np.float32)
    for cuts in ([], [1, 333, 5000, 5001, 12345, 30000], list(range(1600, len(x), 1600))):
        s = LogMelStream(activity=False)
        got = np.concatenate([s.feed(c)[0] for c in np.split(x, cuts)])
        assert got.tobytes() == expected.tobytes(), f"chunks cut at {cuts[:6]}"


def test_the_devices_front_end_gives_the_training_frames_bit_for_bit():
    """The device computes the mel product densely through BLAS, training as a sparse sum
    (DENSE_MEL_FRAMES): on real audio at three levels, fed in live 100 ms chunks and at once,
    the float32 frames the model sees are the same bits."""
    from edgerf.models import DEMO_RECORDING
    pcm = speech.read_wav(DEMO_RECORDING)
    for gain in (0.03, 1.0, 3.0):
        x = (pcm * gain).astype(np.float32)
        expected = LogMelStream(activity=False).feed(x)[0]
        for cuts in (range(1600, len(x), 1600), []):
            dense = LogMelStream(activity=False, dense_mel=True)
            got = np.concatenate([dense.feed(c)[0] for c in np.split(x, list(cuts))])
            assert got.tobytes() == expected.tobytes(), f"gain {gain}"


def test_activity_mask_on_a_synthetic_signal():
    rng = np.random.default_rng(1)
    sr = 16000
    noise = rng.normal(0, 0.05, 4 * sr)                    # loud stationary noise throughout
    t = np.arange(4 * sr) / sr
    burst = (np.abs(t - 2.0) < 0.25) * 0.6 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 7 * t))
    _, lv = LogMelStream().feed((noise + burst).astype(np.float32))
    _, m = ActivityMask().update(lv)
    centre = (np.arange(len(lv)) * HOP + WIN // 2) / sr
    active = np.abs(centre - 2.0) < 0.25
    settled = centre > 0.5                                  # after the floor has met the noise
    assert m[active].mean() > 0.6
    assert m[settled & ~active & (np.abs(centre - 2.0) > 0.4)].mean() < 0.02


def test_gsc_stream_and_normalisation():
    task = get_task("gsc")
    s = task.stream("train", 200, seed=0)
    n_clips = min(200, len(task.split_arrays("train")[0]))
    raw = s.x * task.std + task.mean
    if FULL_DATA:   # the task's constants were measured on the full training split
        assert raw.mean() == pytest.approx(task.mean, abs=0.1) and raw.std() == pytest.approx(task.std, abs=0.1)
    else:
        assert raw.mean() == pytest.approx(task.mean, abs=1.5) and raw.std() == pytest.approx(task.std, abs=1.5)
    assert s.x.shape[1] == 40 and len(s.ends) > 0.75 * n_clips
    assert (s.labels[s.mask] >= 0).all() and (s.labels[~s.mask] == -1).all()
    assert (s.ends >= s.starts).all() and s.mask[s.ends].all()
    assert 0.1 < s.mask.mean() < 0.5
    assert len(task.classes) == 11 and "_silence_" not in task.classes


def test_a_bed_runs_under_gap_and_word_at_the_drawn_snr():
    """--bed-snr-*: with silent gaps the bed alone is heard there, and with the words at 5 dB over
    it the mask marks less of them than with no bed."""
    task = get_task("gsc").with_gaps("silence", 0.5, 0.5)
    clips, labels = task.split_arrays("train")
    arrays = (clips[:40], labels[:40])
    quiet = task.stream("train", None, seed=1, arrays=arrays, augment=True)
    bed = task.with_bed_snr(20, 20).stream("train", None, seed=1, arrays=arrays, augment=True)
    assert task.with_bed_snr(None, None) is task and task.bed_snr_db is None
    assert len(bed) == len(quiet) and not np.array_equal(bed.x, quiet.x)
    # a silent gap: -inf dB of log-mel without the bed, the bed's level with it
    gap = slice(5, 40)                           # inside the first 0.5 s gap (50 frames)
    assert bed.x[gap].mean() > quiet.x[gap].mean() + 1.0
    loud = task.with_bed_snr(5, 5).stream("train", None, seed=1, arrays=arrays, augment=True)
    assert loud.mask.sum() < quiet.mask.sum()
    with pytest.raises(ValueError, match="go together"):
        task.with_bed_snr(5, None)


def test_speed_perturbation_moves_tempo_and_pitch_of_training_words_only():
    """--speed-min/--speed-max: a training word played faster is shorter and its spectrum
    higher, by the drawn factor; evaluation streams and other recipes' draws are untouched."""
    from edgerf.tasks import played_at
    t = np.arange(16_000) / 16_000
    tone = np.sin(2 * np.pi * 1_000 * t).astype(np.float32)
    fast = played_at(tone, 1.25)
    assert len(fast) == 12_800 and fast.dtype == np.float32
    peak = np.fft.rfftfreq(len(fast), 1 / 16_000)[np.abs(np.fft.rfft(fast)).argmax()]
    assert peak == pytest.approx(1_250, abs=2)
    assert np.array_equal(played_at(tone, 1.0), tone)
    task = get_task("gsc")
    clips, labels = task.split_arrays("train")
    arrays = (clips[:40], labels[:40])
    plain = task.stream("train", None, seed=1, arrays=arrays, augment=True)
    assert task.with_speed(None, None) is task
    assert np.array_equal(task.with_speed(1.0, 1.0).stream("train", None, seed=1, arrays=arrays, augment=True).x[:50],
                          plain.x[:50])                    # the first gap: drawn before the first word
    quick = task.with_speed(1.2, 1.2).stream("train", None, seed=1, arrays=arrays, augment=True)
    assert len(quick) < len(plain)
    val = task.stream("val", 20, seed=2)
    assert np.array_equal(task.with_speed(0.8, 1.2).stream("val", 20, seed=2).x, val.x)
    with pytest.raises(ValueError, match="speed range"):
        task.with_speed(1.2, 0.9)


def test_a_frequency_mask_hides_one_band_of_each_training_word_only():
    """--freq-mask N: within each training word one band of at most N adjacent mel channels
    is the data's mean (0 once standardised); gaps, labels, the mask, every other draw and
    evaluation streams are untouched."""
    task = get_task("gsc")
    clips, labels = task.split_arrays("train")
    arrays = (clips[:30], labels[:30])
    plain = task.stream("train", None, seed=3, arrays=arrays, augment=True)
    masked = task.with_freq_mask(6).stream("train", None, seed=3, arrays=arrays, augment=True)
    assert np.array_equal(masked.mask, plain.mask) and np.array_equal(masked.labels, plain.labels)
    changed = masked.x != plain.x
    assert not changed[:plain.starts[0]].any()              # the first gap
    assert (masked.x[changed] == 0).all()
    columns = changed.any(axis=0)
    assert 0 < columns.sum()
    for f0, f1 in zip(plain.starts, plain.ends):
        band = np.flatnonzero(changed[f0:f1 + 1].any(axis=0))
        assert len(band) <= 6 and (len(band) == 0 or band[-1] - band[0] == len(band) - 1)
    assert task.with_freq_mask(None) is task
    assert np.array_equal(task.with_freq_mask(6).stream("val", 10, seed=2).x, task.stream("val", 10, seed=2).x)
    with pytest.raises(ValueError, match="freq-mask"):
        task.with_freq_mask(40)


def test_a_warp_moves_each_training_words_spectrum_only():
    """--warp-min/--warp-max: each training word's frames are its own spectrum stretched along
    frequency (a factor of 1 changes nothing); gaps, labels, the mask, every other draw and
    evaluation streams are untouched."""
    from edgerf.tasks import warped
    task = get_task("gsc")
    clips, labels = task.split_arrays("train")
    arrays = (clips[:30], labels[:30])
    plain = task.stream("train", None, seed=3, arrays=arrays, augment=True)
    assert np.array_equal(task.with_warp(1.0, 1.0).stream("train", None, seed=3, arrays=arrays, augment=True).x,
                          plain.x)
    warp = task.with_warp(0.85, 1.15).stream("train", None, seed=3, arrays=arrays, augment=True)
    assert np.array_equal(warp.mask, plain.mask) and np.array_equal(warp.labels, plain.labels)
    changed = (warp.x != plain.x).any(axis=1)
    assert not changed[:plain.starts[0]].any() and changed[plain.starts].all()
    # a formant moves up the channels under a factor above 1, down under one below
    peak = np.zeros((1, 40), np.float32)
    peak[0, 20] = 1.0
    assert np.argmax(warped(peak, 1.15)[0]) > 20 > np.argmax(warped(peak, 0.85)[0])
    assert np.array_equal(warped(peak, 1.0), peak)
    assert task.with_warp(None, None) is task
    assert np.array_equal(task.with_warp(0.9, 1.1).stream("val", 10, seed=2).x, task.stream("val", 10, seed=2).x)
    with pytest.raises(ValueError, match="warp range"):
        task.with_warp(1.2, 1.1)


@pytest.mark.parametrize("noise", ["bed", "mix"])
def test_a_clean_mask_keeps_the_words_that_noise_hides_from_the_mask(noise):
    """--clean-mask: the model hears the same noisy audio, but which steps are informative is
    read from the words as recorded, so words under loud noise stay words to learn; without
    the switch nothing changes."""
    task = get_task("gsc")
    task = task.with_bed_snr(0, 0) if noise == "bed" else task.with_mix_snr(0, 0)
    clips, labels = task.split_arrays("train")
    arrays = (clips[:40], labels[:40])
    heard = task.stream("train", None, seed=1, arrays=arrays, augment=True)
    clean = task.with_clean_mask(True).stream("train", None, seed=1, arrays=arrays, augment=True)
    plain = get_task("gsc").stream("train", None, seed=1, arrays=arrays, augment=True)
    plain_clean = get_task("gsc").with_clean_mask(True).stream("train", None, seed=1, arrays=arrays, augment=True)
    assert np.array_equal(clean.x, heard.x)                       # the same audio in
    assert clean.mask.sum() > 1.3 * heard.mask.sum() and len(clean.ends) >= len(heard.ends)
    # the default augmentation's milder noise (up to half the background's own level) hides less
    assert len(plain_clean.ends) >= len(plain.ends) and plain_clean.mask.sum() > plain.mask.sum()
    if noise == "bed":        # the bed adds to that noise; the clean mask reads neither
        assert np.array_equal(clean.mask, plain_clean.mask)
    assert (clean.labels[clean.mask] >= 0).all() and (clean.labels[~clean.mask] == -1).all()
    # evaluation streams are never augmented: the switch does not touch them
    val = get_task("gsc").stream("val", 30, seed=2)
    assert np.array_equal(get_task("gsc").with_clean_mask(True).stream("val", 30, seed=2).mask, val.mask)


def test_tiny_gsc_training_run_through_the_cli(tmp_path):
    from edgerf.cli import app
    r = CliRunner().invoke(app, ["train", "--task", "gsc", "--model", "lif", "--hidden", "16", "--epochs", "1",
                                 "--batch", "8", "--train-samples", "120", "--val-samples", "20",
                                 "--test-steps", "2000", "--background-hours", "0.05", "-o", str(tmp_path / "g.pt"),
                                 "-q"])
    assert r.exit_code == 0, r.output
    from edgerf import checkpoint
    ck = checkpoint.load(tmp_path / "g.pt")
    rec = ck.results["test"][0]                # keyword metrics as the field reports them
    assert rec["hits"] + rec["misses"] > 0 and len(rec["det"]) >= 20
    assert rec["det"][0]["fa_per_hour"] >= rec["det"][-1]["fa_per_hour"]    # lower threshold, more accepts
    # false accepts rest on every distinct second of test background, once (never re-cut), with
    # that duration and a 95% upper bound that says how little a short background can show
    task = get_task(ck.task)
    distinct = sum(len(b) for b in task.bind().background("test")) / 16000
    bg = rec["background_fa"]
    assert bg["seconds"] == pytest.approx(min(distinct, 0.05 * 3600), abs=0.1)
    assert bg["per_hour_upper95"] >= 3600 * 2.99 / bg["seconds"] and rec["unknown_fa"]["seconds"] >= 0
    # the operating point: chosen on validation data, sealed in the checkpoint, used by the test events
    op = ck.decision
    assert op["chosen_on"] == "val" and 0.5 <= op["threshold"] <= 0.99 and rec["threshold"] == op["threshold"]
    assert op["keywords"] > 0 and op["val_background_s"] > 0
    assert ck.task["name"] == "gsc" and ck.model.config.input_size == 40 and ck.model.config.classes == 11


@pytest.mark.parametrize("stack", [1, 3])
def test_gsc_export_runtime_features_and_wav_stream(tmp_path, stack):
    """A GSC model end to end on the device side: PCM chunks -> the training features (one
    10 ms frame per step, or ``stack`` of them) -> events."""
    import json

    from edgerf import checkpoint
    from edgerf.cells import ModelConfig, RecurrentClassifier
    from edgerf.checkpoint import Checkpoint
    from edgerf.cli import app
    from edgerf.export.pipeline import ExportConfig, export_checkpoint
    from edgerf.runtime.features import LogMelStream
    from edgerf.runtime import StepModel

    task = get_task("gsc").with_stack(stack)
    model = RecurrentClassifier(ModelConfig(family="gru", input_size=40 * stack, hidden=16, classes=11)).eval()
    checkpoint.save(tmp_path / "g.pt", Checkpoint(model=model, task=task.spec(), training={}))
    export_checkpoint(tmp_path / "g.pt", tmp_path, ExportConfig(formats=("onnx",), parity_steps=500,
                                                                calibration_steps=1000, bundle_steps=300))
    rt = StepModel.load(tmp_path / "g.onnx")
    root = locate("speech-commands").root
    pcm = np.concatenate([speech.read_wav(p) for p in sorted((root / "yes").glob("*.wav"))[:3]])
    chunks = np.concatenate([rt.featurize(pcm[k:k + 1234]) for k in range(0, len(pcm), 1234)])
    frames = (LogMelStream().feed(pcm)[0] - task.mean) / task.std
    frames = frames[: len(frames) // stack * stack].reshape(-1, 40 * stack)       # oldest frame first
    np.testing.assert_allclose(chunks, frames, atol=1e-5)
    assert rt.manifest["frame"]["period_s"] == 0.01 * stack and rt.manifest["frame"]["frame_kind"] == "log-mel"
    # the task's own stream stacks the same way: same step count for the same audio
    assert task.stream("test", 3, seed=0).x.shape[1] == 40 * stack
    _wav(tmp_path / "rec.wav", pcm)
    r = CliRunner().invoke(app, ["stream", str(tmp_path / "g.onnx"), str(tmp_path / "rec.wav"), "--threshold", "0.095"])
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert events and all(e["name"] in task.classes for e in events)      # a threshold just above 1/11


def test_own_vocabulary_few_speakers_long_background_through_the_cli(tmp_path, monkeypatch):
    root, bg = user_dataset(tmp_path)
    assert speech.split_mode(root) == "file"
    r = CliRunner().invoke(app, ["train", "--task", "gsc", "--data", str(root), "--background", str(bg),
                                 "--words", "lights_on,lights_off", "--hidden", "16", "--epochs", "1", "--batch", "4",
                                 "--background-hours", "0.02",
                                 "--val-samples", "4", "--test-steps", "600", "-q", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "m.pt")
    assert ck.task["classes"] == ["lights_off", "lights_on", "_unknown_"]        # music -> _unknown_
    assert ck.task["split_mode"] == "file" and len(ck.task["mean"]) == 40
    assert ck.training["data"]["split"].startswith("by file hash")
    # the data's own name, from the data: a folder of the user's words is not Speech Commands
    r = CliRunner().invoke(app, ["inspect", str(tmp_path / "m.pt")])
    assert r.exit_code == 0 and "keywords from " in r.output and "speech-commands from" not in r.output, r.output
    export = ["export", str(tmp_path / "m.pt"), "--int8", "-q",
              "--parity-steps", "500", "--calibration-steps", "1000", "--check-steps", "500"]
    # without --data the default dataset is read, and it has none of the user's words: refused
    r = CliRunner().invoke(app, export)
    assert r.exit_code == 2 and "lights_off, lights_on" in r.output, r.output
    r = CliRunner().invoke(app, [*export, "--data", str(root), "--background", str(bg)])
    assert r.exit_code == 0, r.output
    from edgerf.runtime.bundle import read as read_bundle
    labels = read_bundle(tmp_path / "m.bundle.npz").stream.sample_labels
    assert set(labels.tolist()) & {0, 1}            # the user's words, not another dataset's _unknown_
    rec = tmp_path / "rec.wav"
    pcm = np.concatenate([speech.read_wav(f) for f in sorted((root / "lights_on").glob("*.wav"))[:3]])
    with wave.open(str(rec), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((pcm * 32767).astype("<i2").tobytes())
    for art in ("m.int8.tflite", "m.onnx"):
        r = CliRunner().invoke(app, ["stream", str(tmp_path / art), str(rec)])
        assert r.exit_code == 0, r.output
        names = [json.loads(line)["name"] for line in r.stdout.splitlines() if line.startswith("{")]
        assert set(names) <= {"lights_off", "lights_on", "_unknown_"}


def test_a_class_with_fewer_clips_than_splits_is_refused_by_name(tmp_path):
    root, bg = user_dataset(tmp_path)
    for f in sorted((root / "music").glob("*.wav"))[2:]:
        f.unlink()                                   # 2 clips: one split must go without
    args = ["train", "--task", "gsc", "--data", str(root), "--background", str(bg), "-o", str(tmp_path / "m.pt")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "'music' has 2" in r.output and not (tmp_path / "m.pt").exists(), r.output
    # as the only word left for _unknown_, that class has 2 clips: named so
    r = CliRunner().invoke(app, [*args, "--words", "lights_on,lights_off"])
    assert r.exit_code == 2 and "'_unknown_' has 2" in r.output, r.output


def test_a_dataset_without_background_or_with_one_word_or_the_filler_as_a_keyword_is_refused(tmp_path):
    root, bg = user_dataset(tmp_path)
    r = CliRunner().invoke(app, ["train", "--task", "gsc", "--data", str(root), "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 2 and "--background" in r.output
    r = CliRunner().invoke(app, ["train", "--task", "gsc", "--data", str(root), "--words", "dishwasher",
                                 "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 2 and "no such folder" in r.output
    # the filler folder named as a keyword made a model of two classes both called _unknown_
    (root / "_unknown_").mkdir()
    shutil.copy(next((root / "music").glob("*.wav")), root / "_unknown_" / "a_nohash_0.wav")
    r = CliRunner().invoke(app, ["train", "--task", "gsc", "--data", str(root), "--background", str(bg),
                                 "--words", "lights_on,_unknown_", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 2 and "filler class" in r.output and not (tmp_path / "m.pt").exists(), r.output


def test_a_folder_of_one_second_background_clips_trains(tmp_path):
    """Background as users often have it: many 1 s clips (the dataset's own _silence_ clips
    copied out), pooled by total duration, each clip whole in one split."""
    from edgerf.data.source import locate
    src = locate("speech-commands").root
    bg = tmp_path / "clips"
    bg.mkdir()
    have = sorted((src / "_silence_").glob("*.wav"))
    for k in range(60):                              # 60 one-second clips (the subset has fewer: reused)
        shutil.copy(have[k % len(have)], bg / f"clip{k:02d}.wav")
    splits = {s: speech.load_background(s, src, bg) for s in ("train", "val", "test")}
    assert all(splits.values()) and sum(map(len, splits.values())) == 60           # every clip, once, whole
    assert all(len(p) == 16_000 for ps in splits.values() for p in ps)
    r = CliRunner().invoke(app, ["train", "--task", "gsc", "--background", str(bg), "--hidden", "8", "--epochs", "1",
                                 "--batch", "4", "--train-samples", "40", "--val-samples", "4", "--test-steps", "300",
                                 "--background-hours", "0.01", "-q", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 0, r.output
    # too few clips for every split: refused with the total and what to give
    few = tmp_path / "few"
    few.mkdir()
    shutil.copy(sorted(bg.glob("*.wav"))[0], few / "a.wav")
    with pytest.raises(DataError, match=r"1 recording\(s\) in .* \(1\.0 s in all\)"):
        for s in ("train", "val", "test"):
            speech.load_background(s, src, few)


def test_every_unreadable_background_file_is_named_at_once(tmp_path):
    from edgerf.runtime.audio import write_wav
    bg = tmp_path / "bg"
    bg.mkdir()
    write_wav(bg / "room.wav", np.random.default_rng(0).normal(0, 0.01, 16000 * 20))
    (bg / "broken.wav").write_bytes(b"RIFF")
    _wav(bg / "phone.wav", np.zeros(8000), rate=8000)
    with pytest.raises(DataError, match=r"2 file\(s\)") as e:
        speech.load_background("train", tmp_path, bg)
    assert "broken.wav" in str(e.value) and "phone.wav: a WAV of 16-bit PCM, 1 channel(s) at 8000 Hz" in str(e.value)
    (bg / "broken.wav").unlink(), (bg / "phone.wav").unlink()
    assert speech.load_background("train", tmp_path, bg)
