"""Frame features, one implementation shared by training (edgerf.tasks) and the
device (StepModel.featurize): what the model saw in training is what the device feeds it.
"""

from __future__ import annotations

import math

import numpy as np


def normalise_rows(pixels: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Image rows of uint8 pixels (or floats in 0..255) -> the normalised frames a model takes."""
    return ((np.asarray(pixels, np.float32) / 255.0) - mean) / std


def standardise(frames: np.ndarray, mean, std) -> np.ndarray:
    """float32 frames -> (frames - mean) / std in place (per feature or one value), in float32:
    a long stream's frames are not copied twice."""
    np.subtract(frames, np.asarray(mean, np.float32), out=frames)
    np.divide(frames, np.asarray(std, np.float32), out=frames)
    return frames


def featurizer(frame: dict):
    """A callable raw input -> frames [T, D] for the manifest's frame spec.

    image-row: pixel rows -> normalised rows. log-mel: PCM chunks of any length (float
    in [-1, 1]) -> normalised log-mel frames; the callable keeps the samples that do
    not yet fill a frame, so it is fed a live stream chunk by chunk.
    """
    kind = frame.get("frame_kind")
    # one value, or one per feature (per-band audio normalisation)
    mean, std = np.asarray(frame["mean"], np.float32), np.asarray(frame["std"], np.float32)
    if kind == "image-row":
        return lambda raw: normalise_rows(raw, mean, std)
    if kind == "log-mel":
        return _StackedLogMel(int(frame.get("stack", 1)), mean, std)
    raise ValueError(f"no feature extractor for frame kind {kind!r}")


class _StackedLogMel:
    """PCM chunks -> normalised log-mel frames, ``k`` consecutive 10 ms frames per step (as
    the task stacks them); frames that do not yet fill a step wait for the next chunk."""

    def __init__(self, k: int, mean: np.ndarray, std: np.ndarray):
        self.k, self.mean, self.std = k, mean, std
        self.stream = LogMelStream(activity=False, dense_mel=True, refuse_overload=True)
        self.pending = np.zeros((0, N_MELS), np.float32)

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        frames = standardise(self.stream.feed(pcm)[0], self.mean, self.std)
        if self.k == 1:
            return frames
        frames = np.concatenate([self.pending, frames])
        n = len(frames) // self.k * self.k
        self.pending = frames[n:]
        return frames[:n].reshape(-1, self.k * frames.shape[1])


# ---------------------------------------------------------------------------------
# Audio: log-mel frames and the activity mask, streaming (chunks of any length in,
# frames out) so the device computes exactly what training computed.
SAMPLE_RATE = 16_000
WIN = 400          # 25 ms analysis window
HOP = 160          # 10 ms hop: 100 frames per second
N_FFT = 512
N_MELS = 40
F_MIN, F_MAX = 20.0, 7_600.0
OVERLOAD_HEADROOM = 4.0     # amplitude over full scale that a device's float PCM may reach (+12 dB)
_RFFT_OUT = np.lib.NumpyVersion(np.__version__) >= "2.0.0"      # rfft(out=) arrived in numpy 2.0


def hz_to_mel(f):
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_edges(n_mels: int = N_MELS, f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """The n_mels + 2 edge frequencies (Hz) of the triangular filters: filter i rises from
    edge i to its centre, edge i + 1, and falls to edge i + 2."""
    return 700.0 * (10 ** (np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sr: int = SAMPLE_RATE,
                   f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1]."""
    edges = mel_edges(n_mels, f_min, f_max)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return fb.astype(np.float32)


def active_rms(x: np.ndarray) -> float:
    """RMS over the 10 ms frames within 30 dB of the loudest: a word's level without the
    silence around it in its clip (what an SNR of speech over background is measured with)."""
    n = len(x) // HOP
    if not n:
        return 0.0
    power = (np.asarray(x[:n * HOP], np.float64).reshape(n, HOP) ** 2).mean(1)
    if power.max() <= 0:
        return 0.0
    return float(np.sqrt(power[power >= power.max() * 1e-3].mean()))


class SparseFilterbank:
    """``power [n, F] @ fb.T`` over the filters' nonzero bins only: each triangular filter
    spans a few adjacent bins, so the product is a gather, a multiply and a segmented sum
    (~500 products per frame instead of 10,280). Also why not BLAS: a [100, 257] x [257, 40]
    matmul measured 80 us per frame when OpenBLAS's threads met a busy CPU (1.4 for the FFT)."""

    def __init__(self, fb: np.ndarray):
        ranges = [np.flatnonzero(row) for row in fb]
        self.cols = np.concatenate([r for r in ranges if len(r)])
        self.weights = np.concatenate([row[r] for row, r in zip(fb, ranges) if len(r)]).astype(np.float64)
        self.starts = np.cumsum([0] + [len(r) for r in ranges if len(r)])[:-1]
        self.filled = np.array([len(r) > 0 for r in ranges])
        self.n = len(fb)

    def __call__(self, power: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``power`` [n, F] float64 -> [n, n_mels] float64 (into ``out`` when given)."""
        # np.take, not power[:, cols]: the same gather, 2x faster on 2,048 frames (measured);
        # mode="clip" lets it write into a buffer unbuffered (every column is in range)
        gathered = np.take(power, self.cols, axis=1, mode="clip")
        np.multiply(gathered, self.weights, out=gathered)
        if self.filled.all():
            return np.add.reduceat(gathered, self.starts, axis=1, out=out)
        out = np.zeros((len(power), self.n), np.float64) if out is None else out
        out[:] = 0.0
        out[:, self.filled] = np.add.reduceat(gathered, self.starts, axis=1)
        return out


# The device's mel product is dense BLAS over at most this many frames at a time: for a live
# stream's 100 ms chunk (10 frames) 6 us against 17 for the sparse gather-and-sum, and a
# product this small (M*N*K < 4 * 65536) stays on one OpenBLAS thread (larger ones met a
# busy CPU at 80 us a frame). BLAS sums in its own order: the float64 bands differ from the
# sparse product's in the last bit in about half the values, the float32 log-mel frames in
# none of 9.6 million (5 minutes of real recording at 8 levels; a flip is expected about
# once in 10^8 values). Training keeps the sparse product, so recorded runs reproduce bit
# for bit.
DENSE_MEL_FRAMES = 16


def _pcm_refusal(pcm: np.ndarray) -> str:
    """Why ``pcm`` is not one channel of float samples (the mistakes a driver's buffer invites)."""
    if pcm.dtype.kind in "iu":
        return (f"PCM of {pcm.dtype} samples: the front end takes float PCM in [-1, 1]; scale 16-bit samples "
                "by 1/32768 (x.astype(np.float32) / 32768).")
    if pcm.dtype.kind != "f":
        return f"PCM must be float samples in [-1, 1], not {pcm.dtype} values."
    return f"PCM must be one channel, samples [n]; got an array of shape {pcm.shape} (mix or pick a channel)."


class LogMelStream:
    """PCM chunks (float in [-1, 1], any length) -> log-mel frames [n, N_MELS] and the
    per-frame waveform log-variance [n] (what the activity mask is computed from; None with
    ``activity=False``, as a device needs no mask; with ``mel=False`` only the variance is
    computed and the log-mel frames are [n, 0]). ``dense_mel``: the device's faster mel
    product (DENSE_MEL_FRAMES); training's is the sparse one.

    Frame t covers samples [t*HOP, t*HOP + WIN); leftover samples wait for the next chunk.
    ``refuse_overload``: a chunk whose frames hold more energy than audio within
    OVERLOAD_HEADROOM of full scale can is refused (ValueError, nothing consumed): the device
    path's guard against 16-bit sample values passed as floats, which give frames 90 dB over
    anything trained on and silently wrong classes.
    """

    BLOCK = 2048       # frames computed at once (about 20 s of audio; its buffers ~22 MB, kept)

    def __init__(self, activity: bool = True, mel: bool = True, dense_mel: bool = False,
                 refuse_overload: bool = False):
        if not (activity or mel):
            raise ValueError("a LogMelStream computes log-mel frames, the activity variance, or both")
        if refuse_overload and not mel:
            raise ValueError("refuse_overload reads the log-mel frames; it needs mel=True")
        self._buf = np.zeros(0, np.float32)
        self._window = np.hanning(WIN + 2)[1:-1].astype(np.float32)   # periodic-style, no zero ends
        self._fb = mel_filterbank()
        self._mel = SparseFilterbank(self._fb)
        self._fb_t = np.ascontiguousarray(self._fb.T, np.float64)       # [F, N_MELS] for the dense product
        self.activity, self.mel, self.dense_mel = activity, mel, dense_mel
        # the largest log-mel value PCM within OVERLOAD_HEADROOM of full scale can give: a band
        # holds at most max(fb) of the frame's energy, which (Parseval) is at most
        # N_FFT * sum(window^2) * headroom^2
        self._ceiling = (float(np.log(self._fb.max() * N_FFT * np.sum(self._window.astype(np.float64) ** 2)
                                      * OVERLOAD_HEADROOM ** 2)) if refuse_overload else math.inf)
        self._padded = self._spectrum = self._power = self._bands = np.zeros((0, 0))   # _logmel's buffers

    def feed(self, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        pcm = np.asarray(pcm)
        if pcm.dtype.kind != "f" or (pcm.ndim > 1 and sum(n > 1 for n in pcm.shape) > 1):
            raise ValueError(_pcm_refusal(pcm))
        pcm = pcm.astype(np.float32, copy=False).ravel()
        buf = np.concatenate([self._buf, pcm]) if len(self._buf) else np.ascontiguousarray(pcm)
        n = 0 if len(buf) < WIN else 1 + (len(buf) - WIN) // HOP
        if n == 0:
            self._buf = buf
            return np.zeros((0, N_MELS), np.float32), (np.zeros(0, np.float32) if self.activity else None)
        # [n, WIN], a view (the ndarray constructor: as_strided costs 9 us a call, a frame's FFT 1.3)
        frames = np.ndarray((n, WIN), np.float32, buffer=buf, strides=(HOP * buf.itemsize, buf.itemsize))
        logmel = np.empty((n, N_MELS if self.mel else 0), np.float32)
        logvar = np.empty(n, np.float32) if self.activity else None
        # BLOCK frames at a time: a long recording's FFT at once took 1.5 GB (17 min of audio)
        for a in range(0, n, self.BLOCK):
            f = frames[a:a + self.BLOCK]
            if logvar is not None:
                logvar[a:a + len(f)] = np.log10(f.var(axis=1) + 1e-10)
            if self.mel:
                self._logmel(f, logmel[a:a + len(f)])
        if self._ceiling < math.inf and float(np.maximum.reduce(logmel, axis=None)) > self._ceiling:
            raise ValueError("PCM far beyond full scale: float PCM is in [-1, 1], and this chunk's energy is "
                             f"more than {OVERLOAD_HEADROOM}x full scale can hold. 16-bit sample values scale "
                             "by 1/32768 (x.astype(np.float32) / 32768). The chunk was refused; nothing of it "
                             "was used.")
        self._buf = buf[n * HOP:]
        return logmel, logvar

    def _logmel(self, frames: np.ndarray, out: np.ndarray) -> None:
        """Windowed frames [b, WIN] float32 -> log-mel into ``out`` [b, N_MELS] float32. The
        numbers are those of ``log(mel(|rfft(float64(frame * window), N_FFT)|^2) + 1e-6)``
        bit for bit (training's cached features and the device's must not drift; with
        ``dense_mel``, see DENSE_MEL_FRAMES); the work
        goes into buffers kept across calls, as a 100 ms chunk's 10 frames spent more time
        allocating than transforming (102 us a chunk, 66 of them the numeric work)."""
        b = len(frames)
        if len(self._padded) < b:
            self._padded = np.zeros((b, N_FFT), np.float64)             # columns WIN.. stay zero
            self._spectrum = np.empty((b, N_FFT // 2 + 1), np.complex128)
            self._power = np.empty((b, N_FFT // 2 + 1), np.float64)
            self._bands = np.empty((b, N_MELS), np.float64)
        padded, power, bands = self._padded[:b], self._power[:b], self._bands[:b]
        # the product in float32, then widened: what (frames * window).astype(float64) computes
        np.multiply(frames, self._window, out=padded[:, :WIN], dtype=np.float32)
        # in float64: numpy's float64 FFT measured 2-4x faster here than its float32 path;
        # pre-padded to N_FFT, what rfft(x, N_FFT) pads to itself
        z = np.fft.rfft(padded, out=self._spectrum[:b]) if _RFFT_OUT else np.fft.rfft(padded)
        sq = z.view(np.float64).reshape(b, -1, 2)                         # [b, N_FFT/2 + 1, (re, im)]
        np.multiply(sq, sq, out=sq)
        np.add(sq[..., 0], sq[..., 1], out=power)
        if self.dense_mel:
            for a in range(0, b, DENSE_MEL_FRAMES):
                np.matmul(power[a:a + DENSE_MEL_FRAMES], self._fb_t, out=bands[a:a + DENSE_MEL_FRAMES])
        else:
            self._mel(power, out=bands)
        bands += 1e-6
        np.log(bands, out=out)


class ActivityMask:
    """Causal activity mask from the waveform's temporal variance, one value per frame:

        e_t = log10 var(frame_t)                         waveform variance, in decades
        s_t = s_{t-1} + a (e_t - s_{t-1})                smoothed level (a = ``smooth``)
        d_t = d_{t-1} + b (|e_t - e_{t-1}| - d_{t-1})    how much the level moves (b = 0.2)
        f_t = s_t                                        if s_t < f_{t-1} (the floor drops at once)
            = f_{t-1} + r (s_t - f_{t-1})                else, r = ``fast`` while the level is
                                                         steady (d_t < ``steady``), ``slow`` while it moves
        n_t = 1 - exp(-(s_t - f_t) / scale)              normalised to [0, 1)
        m_t                                              informative: switches on once n_t > theta
                                                         for ``min_on`` frames in a row, off once
                                                         n_t <= theta for ``hold`` frames (a VAD
                                                         hangover); both causal

    Why the floor: the ``_silence_`` clips hold loud *stationary* noise, as loud as
    speech, so a level threshold (or per-clip max normalisation: 26% of silence frames
    marked at 0.9 in a probe) cannot separate them. Stationary noise keeps d_t low, so
    the floor catches up with it within ~0.1 s; speech keeps d_t high, so the floor
    stays under the word. theta = 0.9 with scale 0.4 means 9.2 dB above the floor.
    Why min_on/hold: without them, blips above threshold after a word were the clip's
    "last informative frame" in half the clips, where a reset-free model has already
    relaxed towards uniform (acc_p 0.57 there vs 0.74 at the end of the word, measured
    on the val split); a word is one informative run.
    Measured on the training split (``python -m edgerf.bench.studies.gsc_mask``): see docs/results.md
    (bench/results/gsc_mask.md).
    """

    def __init__(self, theta: float = 0.9, smooth: float = 0.3, steady: float = 0.08, fast: float = 0.2,
                 slow: float = 0.005, scale: float = 0.4, min_on: int = 3, hold: int = 15):
        self.theta, self.smooth, self.steady, self.fast, self.slow, self.scale = theta, smooth, steady, fast, slow, scale
        self.min_on, self.hold = min_on, hold
        self._state = None       # (s, f, d, previous e)
        self._run = 0            # > 0: frames above theta in a row; < 0: frames below while on
        self._on = False

    def update(self, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame log-variance [n] -> (normalised activity [n], mask [n] bool)."""
        out, mask = [], []
        st, run, on = self._state, self._run, self._on
        smooth, steady, fast, slow, scale, theta = self.smooth, self.steady, self.fast, self.slow, self.scale, self.theta
        min_on, hold, exp = self.min_on, self.hold, math.exp
        for e in np.asarray(logvar, np.float64).tolist():      # plain floats, collected in lists: no per-frame numpy stores
            if st is None:
                st = (e, e, 0.0, e)
            s, f, d, prev = st
            d += 0.2 * (abs(e - prev) - d)
            s += smooth * (e - s)
            f = s if s < f else f + (fast if d < steady else slow) * (s - f)
            st = (s, f, d, e)
            n = 1.0 - exp(-(s - f) / scale)
            out.append(n)
            if n > theta:
                run = run + 1 if run > 0 else 1
                on = on or run >= min_on
            else:
                run = run - 1 if run < 0 else -1
                on = on and -run < hold
            mask.append(on)
        self._state, self._run, self._on = st, run, on
        return np.array(out, np.float32), np.array(mask, bool)
