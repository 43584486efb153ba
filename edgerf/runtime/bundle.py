"""Evaluation bundles: a real test stream with its labels, mask, boundaries and the
torch fp32 reference logits, stored beside exported artifacts so a device with no
torch and no dataset can still measure accuracy and drift (``edgerf bench``).

Frames are stored as float16 (half the size; the reference logits are computed on
exactly those rounded frames, so artifact-vs-reference comparisons stay exact).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerf.runtime.atomic import write_bytes
from edgerf.runtime.stream import Stream
from edgerf.runtime.errors import ArtifactError, EdgerfError
from edgerf.runtime.files import loads, read_npz
from edgerf.runtime.manifest import base_name

FORMAT = "edgerf-bundle/1"


@dataclass
class Bundle:
    stream: Stream
    reference_logits: np.ndarray      # [T, C] torch fp32 on ``stream.x``
    meta: dict                        # format, task spec, checkpoint hash, how it was made


def bundle_path(artifact_or_base: Path) -> Path:
    """The bundle of an export: ``gru.int8.tflite`` / ``gru.onnx`` / ``gru`` -> ``gru.bundle.npz``."""
    return artifact_or_base.with_name(base_name(artifact_or_base) + ".bundle.npz")


def round_frames(x: np.ndarray) -> np.ndarray:
    """The frames as the bundle stores them (float16), back in float32."""
    return x.astype(np.float16).astype(np.float32)


def write(path: str | os.PathLike, stream: Stream, reference_logits: np.ndarray, meta: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=stream.x.astype(np.float16), labels=stream.labels.astype(np.int16),
                        mask=stream.mask, starts=stream.starts, ends=stream.ends,
                        reference_logits=reference_logits.astype(np.float32),
                        meta=np.frombuffer(json.dumps({"format": FORMAT, **meta}).encode(), np.uint8))
    write_bytes(path, buf.getvalue())


# A bundle holds 10^4-10^5 steps (a few MB); anything unpacking past this is not one.
MAX_BUNDLE_BYTES = 1 << 30


def read(path: str | os.PathLike) -> Bundle:
    path = Path(path)
    try:
        z = read_npz(path, MAX_BUNDLE_BYTES, "an evaluation bundle")
        meta = loads(bytes(z["meta"]).decode(), f"{path}: meta")
        stream = Stream(z["x"].astype(np.float32), z["labels"].astype(np.int64), z["mask"].astype(bool),
                        z["starts"].astype(np.int64), z["ends"].astype(np.int64))
        ref = z["reference_logits"].astype(np.float32)
    except FileNotFoundError as e:
        raise ArtifactError(f"no evaluation bundle at {path}; `edgerf export` writes one.") from e
    except EdgerfError as e:
        raise ArtifactError(str(e)) from e
    except Exception as e:
        raise ArtifactError(f"{path} is not a readable evaluation bundle ({e}); re-export the model.") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not an edgerf evaluation bundle.")
    why = stream.problems() or (None if ref.shape[:1] == (len(stream),) and ref.ndim == 2
                                else f"reference logits {ref.shape} do not match {len(stream)} steps")
    if why:
        raise ArtifactError(f"{path} is damaged ({why}); re-export the model.")
    return Bundle(stream, ref, meta)
