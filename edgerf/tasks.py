"""Tasks: what a frame is and how a stream of a task is built (numpy only).

A task is data, not a fork of the trainer: every task gives frames [T, D], labels,
a mask and boundaries through ``Task.stream`` and a JSON-able ``spec`` that the
checkpoint and the manifest carry (so a device knows what a frame is).

``TASKS`` is the one table of tasks; the CLI choices are built from it.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgerf.choices import TASK_NAMES, check_table
from edgerf.data import Stream, concat_samples
from edgerf.data import cache as wave_cache
from edgerf.data import fashion, speech
from edgerf.data.source import DataSource, locate
from edgerf.runtime.stream import NO_LABEL
from edgerf.runtime.errors import DataError
from edgerf.runtime.features import (N_MELS, ActivityMask, LogMelStream, active_rms, hz_to_mel, mel_edges,
                                     normalise_rows, standardise)

SPLITS = ("train", "val", "test")
# What fills the gaps between samples (``gap_kind``; a comma-separated mix draws one kind per
# gap): Gaussian or uniform noise of the same variance, silence, the task's real recorded
# background (audio), or shuffled samples (pieces of other samples in a random order: the
# data's own statistics with no class in them).
GAP_KINDS = ("gaussian", "uniform", "silence", "background", "shuffled")
# Seeds of the streams that separate commands must draw alike: export's parity gate and its
# int8 plan check, calibration, and the evaluation stream that the export's bundle ships and
# that bench draws afresh (so bench on the bundle and bench on the dataset score the same samples).
PARITY_SEED, PLAN_CHECK_SEED, CALIBRATION_SEED, EVAL_SEED = 11, 13, 7, 2026


def gap_kinds(kind: str, task_name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in kind.split(",") if k.strip())
    bad = [k for k in kinds if k not in allowed]
    if not kinds or bad:
        raise ValueError(f"gap kind {kind!r}: {task_name} takes {', '.join(allowed)} (or a comma-separated mix)")
    return kinds


class _Task:
    """What every task does with its data: bind it once, read only through it, describe it."""

    dataset: ClassVar[str]               # a key of edgerf.data.source.DATASETS

    def bind(self, data=None, background=None):
        """This task reading ``data`` (else $EDGERF_DATA, else the defaults): the one place a
        command decides its data; every stream, background and count then reads from there."""
        return replace(self, source=locate(self.dataset, data, background))

    @property
    def data(self) -> DataSource:
        """The bound data, or (a task built without ``bind``, as in library use) the default one."""
        return self.source if self.source is not None else locate(self.dataset)

    def spec(self) -> dict:
        """The JSON-able task: everything a device needs, nothing of this machine."""
        d = {k: v for k, v in asdict(self).items() if k != "source"}
        d["classes"] = list(self.classes)
        return d

    def provenance(self) -> dict:
        """The data folders read, the split rule and the samples per split (no machine paths)."""
        return {**self.data.provenance(), "split": self.split_rule(), "counts": self.split_counts()}


@dataclass(frozen=True)
class SeqFashionMNIST(_Task):
    """Sequential Fashion-MNIST: images fed row by row, noise rows between images.

    Frame: one image row, 28 pixels scaled to [0, 1] then normalised with the
    training-set mean and std. Gap before each image: ``G ~ U{gap_min..gap_max}``
    rows of i.i.d. Gaussian noise N(0, noise_std^2) in the normalised space (so noise
    is as loud as the images but carries no class). Mask: 1 on the 28 image rows,
    0 on gap rows. Splits: 'train' = first 55,000 training images, 'val' = last
    5,000 training images, 'test' = the 10,000 test images (on a subset of the files, the
    same shares).
    """

    name: str = "sfmnist"
    features: int = 28
    frame_kind: str = "image-row"
    period_s: float | None = None       # rows have no wall-clock period
    mean: float = 0.2860                # Fashion-MNIST training pixel mean (pixels / 255)
    std: float = 0.3530                 # ... and std
    gap_min: int = 10                   # shortest noise gap, rows
    gap_max: int = 30                   # longest noise gap: on average 20 noise rows per image
    noise_std: float = 1.0              # noise as loud as normalised pixels
    threshold: float = 0.9              # decision threshold for events and false alarms
    classes: tuple[str, ...] = field(default=fashion.CLASSES)
    gap_kind: str = "gaussian"          # see GAP_KINDS; "background" has no meaning for images
    val_fraction: float = 1 / 12        # the last 5,000 of the 60,000 training images (any subset: the same share)
    source: DataSource | None = field(default=None, compare=False, repr=False)   # see bind

    dataset: ClassVar[str] = "fashion-mnist"

    @property
    def steps_per_sample(self) -> float:
        return 28 + (self.gap_min + self.gap_max) / 2

    def resolve(self, words=None) -> "SeqFashionMNIST":
        """The task as the data defines it (nothing to learn from the files here)."""
        if words:
            raise ValueError("--words is for audio tasks (gsc)")
        return self

    def split_rule(self) -> str:
        return f"fixed: train/val = the training images cut at 1 - {self.val_fraction:.4g}, test = the test images"

    def split_counts(self) -> dict:
        return {s: len(self.split_arrays(s)[1]) for s in SPLITS}

    def with_gaps(self, kind: str | None = None, lo: float | None = None, hi: float | None = None):
        """The task with other gaps (rows): kind(s), shortest and longest."""
        if kind is not None:
            gap_kinds(kind, self.name, tuple(k for k in GAP_KINDS if k != "background"))
        lo = self.gap_min if lo is None else int(lo)
        hi = self.gap_max if hi is None else int(hi)
        if not 0 <= lo <= hi <= 10_000:
            raise ValueError(f"gap length must satisfy 0 <= min <= max <= 10000 rows, not {lo}..{hi}")
        return replace(self, gap_kind=kind or self.gap_kind, gap_min=lo, gap_max=hi)

    def _gap(self, kind: str, g: int, rng, images) -> np.ndarray:
        if kind == "gaussian":
            return rng.normal(0.0, self.noise_std, (g, self.features)).astype(np.float32)
        if kind == "uniform":
            a = self.noise_std * np.sqrt(3.0)
            return rng.uniform(-a, a, (g, self.features)).astype(np.float32)
        if kind == "silence":                           # blank rows, as the camera sees nothing
            return self.normalise(np.zeros((g, self.features), np.uint8))
        rows = images.reshape(-1, self.features)        # shuffled: rows of other images, any order
        return self.normalise(rows[rng.integers(0, len(rows), g)])

    def normalise(self, images: np.ndarray) -> np.ndarray:
        return normalise_rows(images, self.mean, self.std)

    def split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        images, labels = _fashion("test" if split == "test" else "train", str(self.data.root))
        if split == "test":
            return images, labels
        cut = len(images) - max(1, round(len(images) * self.val_fraction))
        if cut < 1:
            raise DataError(f"{len(images)} training images cannot make both a train and a val split.")
        return (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])

    def stream(self, split: str, samples: int | None = None, seed: int = 0,
               arrays=None, augment: bool = False) -> Stream:
        """A stream of ``samples`` images of ``split`` in a seeded random order.

        ``samples=None`` takes the whole split. ``arrays`` skips reading the files
        again when the caller already holds (images, labels). ``augment`` is accepted
        for the common interface; 55,000 images need none.
        """
        images, labels = arrays if arrays is not None else self.split_arrays(split)
        rng = np.random.default_rng(seed)
        n = len(images) if samples is None else min(samples, len(images))
        idx = rng.permutation(len(images))[:n]
        kinds = gap_kinds(self.gap_kind, self.name, GAP_KINDS)
        lengths = rng.integers(self.gap_min, self.gap_max + 1, size=n)
        if kinds == ("gaussian",):       # the default: one draw, so streams stay as they were
            gaps = [rng.normal(0.0, self.noise_std, (g, self.features)).astype(np.float32) for g in lengths]
        else:
            gaps = [self._gap(kinds[rng.integers(len(kinds))], g, rng, images) for g in lengths]
        return concat_samples(self.normalise(images[idx]), labels[idx].tolist(), gaps, idx)

    def samples_for_steps(self, steps: int) -> int:
        """How many samples make a stream of at least ``steps`` steps (on average)."""
        return int(np.ceil(steps / self.steps_per_sample * 1.05))


@dataclass(frozen=True)
class SpeechCommands(_Task):
    """Google Speech Commands keyword streams.

    Frame: 40 log-mel energies of a 25 ms window every 10 ms (16 kHz, FFT 512, mel
    20-7600 Hz; ``edgerf.runtime.features.LogMelStream``), normalised per band with the mean
    and std of a training stream (``resolve`` measures them; the manifest carries them
    so the device normalises the same way). Classes come from the data (``resolve``):
    every word folder, or the chosen ``words`` with the rest as ``_unknown_``. Stream: word clips (1 s each; the 10 keywords and
    ``_unknown_``) with, before each, a gap of U(gap_min_s..gap_max_s) seconds cut at
    random from a ``_silence_`` clip of the same split (real recorded background).
    ``_silence_`` is therefore not a class: on a device "silence" is the absence of a
    keyword, which the reset-free loss already maps to the uniform output (no
    detection); a silence class would duplicate it. Mask: the causal activity mask
    (``edgerf.runtime.features.ActivityMask``, theta = 0.9) inside word clips, 0 in gaps.
    Labels: the clip's class on informative frames. A clip whose frames are all below
    the mask threshold has no informative frame and no acc_p point (counted).
    Splits by speaker hash (``edgerf.data.speech``): train 70%, val 10%, test 20%.

    ``stack`` (``with_stack``): k consecutive log-mel frames make one step of 10k ms (40k
    features, oldest first); a step is informative when any of its frames is. A word is
    then ~k times fewer steps: shorter dependencies for the recurrence to carry and k
    times fewer steps per second of audio on the device.
    """

    name: str = "gsc"
    features: int = 40
    frame_kind: str = "log-mel"
    period_s: float = 0.01               # one frame per 10 ms hop
    sample_rate: int = 16_000
    win: int = 400
    hop: int = 160
    n_fft: int = 512
    mean: float | tuple = -4.80          # log-mel mean and std of a 200-clip training stream: per
    std: float | tuple = 5.04            # band after ``resolve``; these global values are the default
    gap_min_s: float = 0.3
    gap_max_s: float = 1.0
    mix_max: float = 0.5                 # augmentation: most background mixed into a training clip
    gain_min_db: float = -6.0            # augmentation: each training clip's gain is drawn from
    gain_max_db: float = 6.0             # U(gain_min_db, gain_max_db) (with_gain)
    mix_snr_db: tuple | None = None      # augmentation: background under each training clip at an SNR
                                         # drawn from U(lo, hi) dB, instead of U(0, mix_max) of its level
    bed_snr_db: tuple | None = None      # augmentation: a background bed under each sample's gap and word,
                                         # the word U(lo, hi) dB over it (with_bed_snr)
    clean_mask: bool = False             # training streams: the mask from the words as recorded (with_clean_mask)
    speed: tuple | None = None           # augmentation: each training word played U(lo, hi) times as fast (with_speed)
    warp: tuple | None = None            # augmentation: each training word's spectrum stretched U(lo, hi) (with_warp)
    freq_mask: int | None = None         # augmentation: up to N adjacent mel channels of each training word hidden
    threshold: float = 0.9               # mask theta and decision threshold
    classes: tuple[str, ...] = field(default=speech.WORDS + (speech.UNKNOWN,))
    split_mode: str = "speaker"          # speaker-hash split, or per file for few speakers
    norm_clips: int = 200                # training clips that measure the per-band statistics
    gap_kind: str = "background"         # see GAP_KINDS
    stack: int = 1                       # log-mel frames per step (with_stack)
    source: DataSource | None = field(default=None, compare=False, repr=False)   # see bind

    dataset: ClassVar[str] = "speech-commands"

    @property
    def steps_per_sample(self) -> float:
        return (98 + (self.gap_min_s + self.gap_max_s) / 2 * self.sample_rate / self.hop) / self.stack

    def with_stack(self, k: int | None) -> "SpeechCommands":
        """The task with ``k`` log-mel frames per step (None: as it is)."""
        if k is None:
            return self
        if not 1 <= int(k) <= 100:
            raise ValueError(f"--frame-stack must be in 1..100, not {k}")
        k = int(k)
        return replace(self, stack=k, features=N_MELS * k, period_s=round(self.hop / self.sample_rate * k, 6))

    def with_mix_snr(self, lo: float | None, hi: float | None) -> "SpeechCommands":
        """The task with training background mixed at an SNR from U(lo, hi) dB (None: as it is)."""
        snr = _snr_range(lo, hi, "mix")
        return self if snr is None else replace(self, mix_snr_db=snr)

    def with_bed_snr(self, lo: float | None, hi: float | None) -> "SpeechCommands":
        """The task with a training background bed that runs under each sample's gap and word,
        the word U(lo, hi) dB over it (None: as it is). Unlike ``with_mix_snr`` (background
        under the word only, which the activity mask then marks as informative with the
        word), the bed is already there in the gap, as in a noisy room: the mask's floor
        follows it and marks only what stands over it."""
        snr = _snr_range(lo, hi, "bed")
        return self if snr is None else replace(self, bed_snr_db=snr)

    def with_speed(self, lo: float | None, hi: float | None) -> "SpeechCommands":
        """The task whose training words are each played at a speed drawn from U(lo, hi)
        (None: as it is): resampled, so tempo and pitch move together, as between speakers
        with shorter or longer vocal tracts (Kaldi's speed perturbation, 0.9-1.1 there). The
        test split's speakers are never heard in training; this widens the voices that are."""
        factors = _factor_range(lo, hi, 0.5, 2.0, "speed")
        return self if factors is None else replace(self, speed=factors)

    def with_warp(self, lo: float | None, hi: float | None) -> "SpeechCommands":
        """The task whose training words each have their spectrum stretched along frequency by
        a factor drawn from U(lo, hi) (None: as recorded) at the same tempo: vocal tract length
        perturbation (Jaitly and Hinton, 2013), the formants of a shorter (above 1) or longer
        vocal tract. ``with_speed`` moves formants and tempo together; this moves them apart."""
        factors = _factor_range(lo, hi, 0.7, 1.4, "warp")
        return self if factors is None else replace(self, warp=factors)

    def with_freq_mask(self, n: int | None) -> "SpeechCommands":
        """The task whose training words each have a band of up to ``n`` adjacent mel channels
        set to the data's mean (SpecAugment's frequency mask, drawn per word; None: none): a
        word must be told from what is left, as when a room or a microphone takes a band away."""
        if n is None:
            return self
        if not 1 <= int(n) < N_MELS:
            raise ValueError(f"--freq-mask must be 1..{N_MELS - 1} mel channels, not {n}")
        return replace(self, freq_mask=int(n))

    def with_clean_mask(self, on: bool) -> "SpeechCommands":
        """The task whose training streams read the activity mask (which steps of a word are
        informative) from the audio as recorded, before augmentation mixes background under
        it. The mask says where the word is; noise added on purpose does not move the word, and
        a mask read from the noisy mix drops the word's quieter frames (at 5 dB SNR a third of
        the test words had no informative step at all), teaching the model that a word under
        noise is a gap."""
        return replace(self, clean_mask=bool(on))

    def with_gain(self, lo: float | None = None, hi: float | None = None) -> "SpeechCommands":
        """The task with another training gain range in dB (None: as it is)."""
        lo = self.gain_min_db if lo is None else float(lo)
        hi = self.gain_max_db if hi is None else float(hi)
        if not -60 <= lo <= hi <= 40:
            raise ValueError(f"gain range must satisfy -60 <= min <= max <= 40 dB, not {lo}..{hi}")
        return replace(self, gain_min_db=lo, gain_max_db=hi)

    def provenance(self) -> dict:
        """As every task's, and the keys of the decoded-audio caches read (edgerf.data.cache)."""
        keys = {sp: k for (root, mode, sp), k in CACHE_KEYS.items()
                if root == str(self.data.root) and mode == self.split_mode}
        return {**super().provenance(), **({"audio_cache": keys} if keys else {})}

    def split_rule(self) -> str:
        return {"speaker": "by speaker hash, 70/10/20", "file": "by file hash, 70/10/20 (fewer than "
                f"{speech.MIN_SPEAKERS} speakers)"}[self.split_mode] + \
            ("; background recordings cut in time 70/10/20" if self.data.background else "")

    def split_counts(self) -> dict:
        """Word clips per split that this task's classes take (file listing, nothing decoded)."""
        keep = set(self.classes) | (set(speech.word_folders(self.data.root)) if speech.UNKNOWN in self.classes
                                    else set())
        splits = [speech.clip_split(c, self.split_mode) for c in speech.list_clips(self.data.root)
                  if c.word in keep]                          # one listing, not one per split
        return {s: splits.count(s) for s in SPLITS}

    def resolve(self, words=None) -> "SpeechCommands":
        """The task for its bound dataset: its classes (every word folder, or ``words`` with the
        other folders as ``_unknown_``), its split mode, and the per-band normalisation
        measured on its training split."""
        root = self.data.root
        found = speech.word_folders(root)
        if words:
            chosen = [w.strip() for w in (words.split(",") if isinstance(words, str) else words) if w.strip()]
            if speech.UNKNOWN in chosen:          # it became a keyword and the filler class at once
                raise DataError(f"--words {speech.UNKNOWN}: that folder is the filler class, which holds every "
                                "word not in --words; name keywords only.")
            missing = [w for w in chosen if w not in found]
            if missing:
                raise DataError(f"--words {', '.join(missing)}: no such folder in {root} (it has: {', '.join(found)}).")
        else:
            chosen = [w for w in found if w != speech.UNKNOWN]
        rank = {w: i for i, w in enumerate(speech.WORDS)}
        chosen = sorted(dict.fromkeys(chosen), key=lambda w: (rank.get(w, len(rank)), w))
        rest = set(found) - set(chosen)
        classes = tuple(chosen) + ((speech.UNKNOWN,) if rest else ())
        if len(classes) < 2:
            raise DataError(f"{root} gives {len(classes)} class ({', '.join(classes)}); a keyword model needs two "
                            "or more word folders (or one word and other words as _unknown_).")
        counts = Counter(c.word if c.word in chosen else speech.UNKNOWN for c in speech.list_clips(root)
                         if c.word != speech.SILENCE)
        few = {c: counts[c] for c in classes if counts[c] < len(SPLITS)}
        if few:
            raise DataError(f"too few clips in {root}: " + ", ".join(f"{c!r} has {n}" for c, n in few.items())
                            + f"; each class needs at least one clip per split ({', '.join(SPLITS)}), so "
                            f"{len(SPLITS)} or more (tens per speaker are usual). Add recordings, or leave the "
                            "word out with --words.")
        task = replace(self, classes=classes, split_mode=speech.split_mode(root), source=self.data)
        raw = replace(task, mean=0.0, std=1.0).with_stack(1)     # statistics per band, on 10 ms frames
        n = min(self.norm_clips, len(raw.split_arrays("train")[0]))
        x = raw.stream("train", n, seed=0).x
        return replace(task, mean=tuple(np.round(x.mean(0), 4).tolist()),
                       std=tuple(np.round(np.maximum(x.std(0), 1e-3), 4).tolist()))

    def split_arrays(self, split: str):
        """Word clips of a split (object array of waveforms) and their labels. Every class but
        ``_unknown_`` must be a word folder of the data: a model's words are never silently
        replaced by another dataset's clips as ``_unknown_``."""
        root = self.data.root
        missing = [c for c in self.classes if c != speech.UNKNOWN and c not in speech.word_folders(root)]
        if missing:
            raise DataError(f"{root} has no folder for the word(s) {', '.join(missing)} of this task; pass the "
                            "dataset it was trained on with --data.")
        waves, words = _speech_split(split, str(root), self.split_mode)
        index = {c: i for i, c in enumerate(self.classes)}
        other = index.get(speech.UNKNOWN)
        keep = [i for i, w in enumerate(words) if w != speech.SILENCE and (w in index or other is not None)]
        if not keep:
            raise DataError(f"the {split} split holds no word clips ({self.split_mode} split of "
                            f"{root}); add recordings or speakers.")
        arr = np.empty(len(keep), dtype=object)
        arr[:] = [waves[i] for i in keep]
        return arr, np.array([index.get(words[i], other) for i in keep], np.int64)

    def background(self, split: str) -> list[np.ndarray]:
        """The split's background: the bound --background recordings, else the _silence_ clips."""
        bg = self.data.background
        return _background(split, str(self.data.root), None if bg is None else str(bg), self.split_mode)

    def stream(self, split: str, samples: int | None = None, seed: int = 0,
               arrays=None, augment: bool = False, gain_db: float | None = None,
               snr_db: float | None = None) -> Stream:
        """``augment`` (training streams only): each word clip gets a random gain
        (U(gain_min_db, gain_max_db), default +-6 dB) and a random background crop of the
        split mixed in at a random level (0..``mix_max`` of the background's own amplitude),
        the standard Speech Commands augmentation; new draws every epoch.

        Evaluation at other levels (the gaps stay the split's real background as recorded):
        ``gain_db`` scales every word clip; ``snr_db`` puts every word at that SNR over the
        background bed, which then runs on under the word (the word's active RMS, over its
        10 ms frames within 30 dB of its loudest, against the RMS of the bed beneath it)."""
        clips, labels = arrays if arrays is not None else self.split_arrays(split)
        bg = self.background(split)
        rng = np.random.default_rng(seed)
        n = len(clips) if samples is None else min(samples, len(clips))
        idx = rng.permutation(len(clips))[:n]
        bounds, t = [], 0
        # Features are computed as the audio is drawn (the front end is streaming: the same
        # frames as from the whole waveform), so a stream holds its frames, not its waveform (8x
        # the bytes): a 2,000-clip evaluation stream held ~0.5 GB of audio. Only the bed under
        # each sample needs the whole waveform first.
        clean = augment and self.clean_mask         # the mask from the audio before augmentation's noise
        segs, logmels, actives = [], [], []
        front, vad = LogMelStream(activity=not clean), ActivityMask(theta=self.threshold)
        recorded = LogMelStream(mel=False) if clean else None

        def feed(audio: np.ndarray, reference: np.ndarray | None = None) -> None:
            logmel, logvar = front.feed(audio)
            logmels.append(logmel)
            if recorded is not None:
                logvar = recorded.feed(reference)[1]
            actives.append(vad.update(logvar)[1])
        bedded = augment and self.bed_snr_db is not None
        references = []                             # with a bed and a clean mask: the words as recorded

        def hold(audio: np.ndarray, reference: np.ndarray) -> None:
            segs.append(audio)
            if clean:
                references.append(reference)
        add = hold if bedded else feed
        kinds = gap_kinds(self.gap_kind, self.name, GAP_KINDS)
        for i in idx:
            g = int(rng.uniform(self.gap_min_s, self.gap_max_s) * self.sample_rate)
            if kinds == ("background",):     # the default: the same draws as ever
                b = bg[rng.integers(len(bg))]
                start = rng.integers(0, max(1, len(b) - g + 1))
                gap = b[start:start + g]
            else:
                gap = self._gap(kinds[rng.integers(len(kinds))], g, rng, bg, clips)
            clip = wave_cache.as_float(clips[i])
            if augment and self.speed is not None:
                clip = played_at(clip, rng.uniform(*self.speed))
            if gain_db is not None:
                clip = clip * np.float32(10 ** (gain_db / 20))
            if snr_db is not None:
                b = bg[rng.integers(len(bg))]
                off = rng.integers(0, max(1, len(b) - len(clip) + 1))
                bed = np.resize(b[off:off + len(clip)], len(clip))
                level = active_rms(clip)
                bed_rms = max(float(np.sqrt(np.mean(bed.astype(np.float64) ** 2))), 1e-4)
                clip = bed + clip * np.float32(10 ** (snr_db / 20) * bed_rms / max(level, 1e-9))
            word = clip                              # the word as recorded (gain included)
            if augment:
                noise = bg[rng.integers(len(bg))]
                off = rng.integers(0, max(1, len(noise) - len(clip) + 1))
                noise = np.resize(noise[off:off + len(clip)], len(clip))
                word = clip * 10 ** (rng.uniform(self.gain_min_db, self.gain_max_db) / 20)
                if self.mix_snr_db is None:
                    clip = word + rng.uniform(0, self.mix_max) * noise
                else:       # the background at a drawn SNR under the word (as in a noisy room)
                    level = active_rms(word) / 10 ** (rng.uniform(*self.mix_snr_db) / 20)
                    noise_rms = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
                    clip = word + noise * np.float32(level / noise_rms if noise_rms > 1e-6 else 0.0)
            add(gap, gap)
            add(clip, word)
            t += len(gap)
            bounds.append((t, t + len(clip), int(labels[i]), int(i)))
            t += len(clip)
        if segs:
            feed(self._under_bed(np.concatenate(segs), bounds, bg, rng),
                 np.concatenate(references) if clean else None)
        logmel, active = np.concatenate(logmels), np.concatenate(actives)
        logmels.clear()
        centre = np.arange(len(logmel)) * self.hop + self.win // 2
        lab = np.full(len(logmel), NO_LABEL, np.int64)
        mask = np.zeros(len(logmel), bool)
        spans = np.searchsorted(centre, np.asarray([b[:2] for b in bounds], np.int64).reshape(-1, 2))
        starts, ends, ids = [], [], []
        for (f0, f1), (_, _, y, i) in zip(spans, bounds):
            inside = active[f0:f1]
            if not inside.any():
                continue
            mask[f0:f1] = inside
            lab[f0:f1][inside] = y
            starts.append(f0)
            ends.append(f0 + int(np.flatnonzero(inside)[-1]))
            ids.append(i)
        if augment and self.warp is not None:          # drawn after the audio's: those stay as they were
            for f0, f1 in spans:
                logmel[f0:f1] = warped(logmel[f0:f1], rng.uniform(*self.warp))
        x = standardise(logmel, self.mean, self.std)
        if augment and self.freq_mask is not None:     # drawn last: every other draw stays as it was
            for f0, f1 in spans:
                width = rng.integers(0, self.freq_mask + 1)
                band = rng.integers(0, N_MELS - width + 1)
                x[f0:f1, band:band + width] = 0.0       # standardised: 0 is the data's mean
        return _stacked(Stream(x, lab, mask, np.asarray(starts, np.int64),
                               np.asarray(ends, np.int64), np.asarray(ids, np.int64)), self.stack)

    def _under_bed(self, wav: np.ndarray, bounds: list, bg: list[np.ndarray], rng) -> np.ndarray:
        """``wav`` with a bed under each sample (its gap and its word): a crop of a background
        recording, levelled so the word (its active RMS) stands U(bed_snr_db) dB over it."""
        out, start = wav.copy(), 0
        for lo, hi, _, _ in bounds:
            level = active_rms(wav[lo:hi])
            b = bg[rng.integers(len(bg))]
            off = rng.integers(0, max(1, len(b) - (hi - start) + 1))
            bed = np.resize(b[off:off + hi - start], hi - start).astype(np.float32)
            rms = float(np.sqrt(np.mean(bed.astype(np.float64) ** 2)))
            snr = rng.uniform(*self.bed_snr_db)
            if rms > 1e-6 and level > 0:
                out[start:hi] += bed * np.float32(level / 10 ** (snr / 20) / rms)
            start = hi
        return out

    def samples_for_steps(self, steps: int) -> int:
        return int(np.ceil(steps / self.steps_per_sample * 1.1))

    def with_gaps(self, kind: str | None = None, lo: float | None = None, hi: float | None = None):
        """The task with other gaps (seconds): kind(s), shortest and longest."""
        if kind is not None:
            gap_kinds(kind, self.name, GAP_KINDS)
        lo = self.gap_min_s if lo is None else float(lo)
        hi = self.gap_max_s if hi is None else float(hi)
        if not 0 <= lo <= hi <= 600:
            raise ValueError(f"gap length must satisfy 0 <= min <= max <= 600 s, not {lo}..{hi}")
        return replace(self, gap_kind=kind or self.gap_kind, gap_min_s=lo, gap_max_s=hi)

    def _gap(self, kind: str, g: int, rng, bg: list[np.ndarray], clips) -> np.ndarray:
        b = bg[rng.integers(len(bg))]
        if kind == "background":
            start = rng.integers(0, max(1, len(b) - g + 1))
            return np.resize(b[start:start + g], g)
        rms = float(np.sqrt(np.mean(b ** 2))) + 1e-6   # synthetic noise as loud as real background
        if kind == "gaussian":
            return rng.normal(0.0, rms, g).astype(np.float32)
        if kind == "uniform":
            return rng.uniform(-rms * np.sqrt(3.0), rms * np.sqrt(3.0), g).astype(np.float32)
        if kind == "silence":
            return np.zeros(g, np.float32)
        c = wave_cache.as_float(clips[rng.integers(len(clips))])   # shuffled: 10 ms pieces of a word clip
        pieces = np.array_split(np.resize(c, g), max(1, g // self.hop))
        return np.concatenate([pieces[k] for k in rng.permutation(len(pieces))]).astype(np.float32)

    def background_stream(self, split: str = "test", seconds: float | None = None, seed: int = 0) -> Stream:
        """Background only, for false accepts: every background recording of the split once,
        whole, in a seeded order, up to ``seconds`` (None: all of it). Never a second twice,
        so a rate counted on it rests on the distinct audio it reports (``len * period_s``);
        no sample, every step a noise step."""
        bg = self.background(split)
        order = np.random.default_rng(seed).permutation(len(bg))
        pieces, total = [], 0
        for k in order:
            if seconds is not None and total >= seconds * self.sample_rate:
                break
            pieces.append(bg[k])
            total += len(bg[k])
        wav = np.concatenate(pieces)
        if seconds is not None:
            wav = wav[: int(seconds * self.sample_rate)]
        logmel, _ = LogMelStream().feed(wav)
        x = (logmel - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        T = len(x)
        return _stacked(Stream(x.astype(np.float32), np.full(T, NO_LABEL, np.int64), np.zeros(T, bool),
                               np.zeros(0, np.int64), np.zeros(0, np.int64)), self.stack)


def _snr_range(lo: float | None, hi: float | None, flag: str) -> tuple[float, float] | None:
    """(lo, hi) of the ``--{flag}-snr-min-db/--{flag}-snr-max-db`` pair, None when neither is given."""
    if lo is None and hi is None:
        return None
    if lo is None or hi is None or not -30 <= lo <= hi <= 60:
        raise ValueError(f"--{flag}-snr-min-db and --{flag}-snr-max-db go together, -30 <= min <= max <= 60, not "
                         f"{lo}..{hi}")
    return float(lo), float(hi)


def _factor_range(lo: float | None, hi: float | None, low: float, high: float,
                  what: str) -> tuple[float, float] | None:
    """(lo, hi) of a factor drawn per training word (a missing end is 1: as recorded), None
    when neither is given."""
    if lo is None and hi is None:
        return None
    lo, hi = 1.0 if lo is None else float(lo), 1.0 if hi is None else float(hi)
    if not low <= lo <= hi <= high:
        raise ValueError(f"{what} range must satisfy {low} <= min <= max <= {high}, not {lo}..{hi}")
    return lo, hi


def played_at(clip: np.ndarray, speed: float) -> np.ndarray:
    """``clip`` played ``speed`` times as fast: linear interpolation, no anti-alias filter (played
    faster, what lay above 8 kHz / speed folds back, where speech holds little energy)."""
    n = max(1, int(len(clip) / speed))
    return np.interp(np.arange(n) * speed, np.arange(len(clip)), clip).astype(np.float32)


def warped(logmel: np.ndarray, alpha: float) -> np.ndarray:
    """Log-mel frames ``[T, N_MELS]`` of the same sound with its spectrum stretched along
    frequency, f -> alpha f: each channel takes the value the frames had at its centre
    frequency / alpha, interpolated between channel centres (held at the outermost channel
    beyond them). Interpolating band energies is approximate where filters widen; as an
    augmentation it only has to move formants as a vocal tract of another length would."""
    centres = mel_edges()[1:-1]
    pos = np.interp(hz_to_mel(centres / alpha), hz_to_mel(centres), np.arange(len(centres)))
    i0 = np.minimum(pos.astype(np.int64), len(centres) - 2)
    w = (pos - i0).astype(np.float32)
    return logmel[:, i0] * (1 - w) + logmel[:, i0 + 1] * w


def _stacked(s: Stream, k: int) -> Stream:
    """``k`` consecutive frames per step (the device's featurizer stacks the same way): a
    step is informative when any of its frames is, and keeps the sample's label; a trailing
    part-step is dropped, with any sample that ends in it."""
    if k == 1:
        return s
    T = len(s) // k
    mask = s.mask[:T * k].reshape(T, k).any(1)
    labels = np.where(mask, s.labels[:T * k].reshape(T, k).max(1), NO_LABEL)
    keep = s.ends < T * k
    return Stream(s.x[:T * k].reshape(T, k * s.x.shape[1]), labels, mask, s.starts[keep] // k, s.ends[keep] // k,
                  None if s.ids is None else s.ids[keep])


# Decoded files, keyed by the folder they came from (a bound task always names one).
@functools.lru_cache(maxsize=4)
def _fashion(split: str, root: str):
    return fashion.load(split, Path(root))


@functools.lru_cache(maxsize=8)
def _speech_split(split: str, root: str, mode: str = "speaker"):
    """The split's clips as views into the shared decoded-audio cache (edgerf.data.cache):
    memory-mapped, so a process holds none of the split's audio itself."""
    clips = speech.list_clips(Path(root), split, mode)
    cache = wave_cache.split_waves([c.path for c in clips], f"{split}/{mode}",
                                   log=lambda s: print(s, file=sys.stderr))
    CACHE_KEYS[(root, mode, split)] = cache.key[:16]
    return cache.clips, [c.word for c in clips]


CACHE_KEYS: dict[tuple[str, str, str], str] = {}     # (root, split mode, split) -> audio cache key read


@functools.lru_cache(maxsize=8)
def _background(split: str, root: str, folder: str | None, mode: str):
    return speech.load_background(split, Path(root), None if folder is None else Path(folder), mode)


TASKS = {"sfmnist": SeqFashionMNIST(), "gsc": SpeechCommands()}
check_table(TASKS, TASK_NAMES, "TASKS")


def get_task(name_or_spec):
    """The task from its name, or rebuilt from a stored spec (checkpoint/manifest)."""
    if isinstance(name_or_spec, dict):
        spec = dict(name_or_spec)
        base = TASKS.get(spec.get("name"))
        if base is None:
            raise ValueError(f"unknown task {spec.get('name')!r}; known: {', '.join(TASKS)}")
        spec["classes"] = tuple(spec.get("classes", base.classes))
        for k in ("mean", "std", "mix_snr_db", "bed_snr_db", "speed"):
            if isinstance(spec.get(k), list):
                spec[k] = tuple(spec[k])
        known = {k: v for k, v in spec.items() if k in base.__dataclass_fields__}
        return type(base)(**known)
    if name_or_spec not in TASKS:
        raise ValueError(f"unknown task {name_or_spec!r}; known: {', '.join(TASKS)}")
    return TASKS[name_or_spec]
