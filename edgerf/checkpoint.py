"""Checkpoints: config, weights, task spec, training summary and versions in one file.

Loaded with ``torch.load(weights_only=True)``, so a checkpoint can never run
pickled code. One SHA-256 digest covers everything that changes what the model computes
(the weights, the model config, and the task spec: classes, frame spec, normalisation),
checked on load, so a file edited after training is refused rather than silently used.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgerf import __version__
from edgerf.runtime.atomic import write_bytes
from edgerf.cells import ModelConfig, RecurrentClassifier
from edgerf.runtime.errors import CheckpointError
from edgerf.runtime.files import FileRefused, open_regular, zip_errors
from edgerf.runtime.manifest import file_sha256
from edgerf.tasks import get_task

FORMAT = "edgerf-ckpt/1"


@dataclass
class Checkpoint:
    model: RecurrentClassifier
    task: dict                      # the task spec (see edgerf.tasks)
    training: dict                  # mode, command, seed, epochs, train_seconds
    results: dict = field(default_factory=dict)   # evaluation records
    versions: dict = field(default_factory=dict)
    sha256: str = ""                # of the file, as read
    # the operating point (audio): {"threshold": ..., how it was chosen on validation data}
    decision: dict | None = None


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def computes_digest(weights_sha256: str, config: dict, task: dict, decision: dict | None = None) -> str:
    """The digest of what computes: the weights' digest, the config, the task spec and (when
    there is one) the operating point the events are decided at."""
    import json
    sealed = {"weights": weights_sha256, "config": config, "task": task}
    if decision is not None:
        sealed["decision"] = decision
    canonical = json.dumps(sealed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def versions() -> dict:
    return {"edgerf": __version__, "torch": torch.__version__.split("+")[0],
            "python": platform.python_version()}


def save(path: str | os.PathLike, ckpt: Checkpoint) -> None:
    state = {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "config": ckpt.model.config.to_dict(),
        "task": ckpt.task,
        "training": ckpt.training,
        "results": ckpt.results,
        "versions": ckpt.versions or versions(),
        "weights": state,
        "weights_sha256": weights_digest(state),
    }
    if ckpt.decision is not None:
        payload["decision"] = ckpt.decision
    payload["computes_sha256"] = computes_digest(payload["weights_sha256"], payload["config"], ckpt.task,
                                                 ckpt.decision)
    # Serialised in memory first (a checkpoint is kilobytes to a few MB): torch.save on a
    # full disk raises RuntimeError, the atomic write raises a clear ArtifactError.
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_bytes(path, buf.getvalue())


# torch writes checkpoints as zip files of stored (uncompressed) entries: what loading one
# allocates is what its directory lists, bounded here before torch reads a byte of it.
MAX_CHECKPOINT_BYTES = 1 << 28
CHECKPOINT_REMEDY = "Pass a .pt file written by `edgerf train`."


def load(path: str | os.PathLike) -> Checkpoint:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist. Train one with `edgerf train -o {path}`.")
    return _from_payload(read_payload(path), path)


def read_payload(path: Path, kind: str = "checkpoint", remedy: str = CHECKPOINT_REMEDY,
                 max_bytes: int = MAX_CHECKPOINT_BYTES) -> object:
    """What a torch file edgerf wrote holds (a checkpoint, a training state), read as every one
    is: a regular file of bounded size whose zip directory is checked before torch allocates,
    tensors only. A file that is none of these is a CheckpointError saying it is not an edgerf
    ``kind``, and ``remedy``."""
    try:
        f = open_regular(path, max_bytes, f"a {kind}")
    except FileRefused as e:
        raise CheckpointError(str(e)) from e
    with f:
        _check_unpacked(f, path, f"an edgerf {kind}", remedy, max_bytes)
        return _torch_load(f, path, f"an edgerf {kind}", remedy)




def _check_unpacked(f, path: Path, kind: str, remedy: str, max_bytes: int) -> None:
    import zipfile

    size = os.fstat(f.fileno()).st_size
    try:
        with zipfile.ZipFile(f) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except zip_errors() as e:
        raise CheckpointError(f"{path} is not {kind} (truncated, empty or not a torch zip file: "
                              f"{str(e)[:60]}). {remedy}") from e
    f.seek(0)
    if unpacked > max_bytes or unpacked > 4 * size + (1 << 20):
        raise CheckpointError(f"{path} unpacks to {unpacked:,} bytes from {size:,} on disk; {kind} "
                              "is stored unpacked. Not one of ours, or damaged: refusing to load it.")


def _torch_load(f, path: Path, kind: str, remedy: str) -> dict:
    import warnings
    try:
        # a damaged file can make torch warn first (an unknown pickle protocol: "please file an
        # issue"); what the user needs is the one refusal below
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/foreign files
        # torch's own message may advise weights_only=False, i.e. running the file's
        # code: never pass that on; say what the file is not, and what to do instead.
        why = "it holds Python objects beyond tensors, which edgerf never unpickles" \
            if "weights_only" in str(e) or "Weights only" in str(e) else "truncated, empty or not a torch file"
        raise CheckpointError(f"{path} is not {kind} ({why}). {remedy}") from e


def _from_payload(payload, path: Path) -> Checkpoint:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an edgerf checkpoint (expected format {FORMAT}). "
                              "Use a file written by `edgerf train`.")
    try:
        config = ModelConfig(**payload["config"])
        weights = payload["weights"]
        if weights_digest(weights) != payload["weights_sha256"]:
            raise CheckpointError(f"{path}: the weights do not match their recorded SHA-256; the file "
                                  "was modified after training. Re-train or restore the original.")
        if payload.get("computes_sha256") != computes_digest(payload["weights_sha256"], payload["config"],
                                                             payload["task"], payload.get("decision")):
            raise CheckpointError(f"{path}: its config, task (classes, frame spec, normalisation) or operating "
                                  "point do not match "
                                  "the digest recorded at training, or it records none (written before edgerf "
                                  "sealed them); the file was modified. Re-train or restore the original.")
        get_task(payload["task"])                      # a task this edgerf knows
        # The config is checked against the weights before anything is allocated from it: a
        # small file whose config claims a huge model would otherwise cost gigabytes first.
        with torch.device("meta"):
            skeleton = RecurrentClassifier(config)
        want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in weights.items()}
        if want != got:
            raise CheckpointError(f"{path}: its config ({config.family}, hidden {config.hidden}, layers "
                                  f"{config.layers}, frontend {config.frontend}, readout {config.readout}) does "
                                  "not match the weights it holds; the file is damaged or was edited. Re-train or "
                                  "restore the original.")
        model = RecurrentClassifier(config)
        model.load_state_dict(weights)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{path} is an edgerf checkpoint with missing or inconsistent fields "
                              f"({e}). Re-train it with this version of edgerf.") from e
    model.eval()
    return Checkpoint(model=model, task=payload["task"], training=payload.get("training", {}),
                      results=payload.get("results", {}), versions=payload.get("versions", {}),
                      sha256=file_sha256(path), decision=payload.get("decision"))
