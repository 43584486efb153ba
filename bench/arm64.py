"""``edgerf bench --device arm64``: the same runtime and stream on aarch64 under
user-mode emulation, compared step for step with the x86 run.

Set-up (once, ``edgerf bench --device arm64 --setup``, needs root for apt): Debian's
qemu-user-static (and qemu-user, whose dynamic build loads the instruction-counting plugin
of ``edgerf.bench.studies.arm_cost``); Debian's arm64 Python 3.11 and the libraries it links, unpacked
into a sysroot; aarch64 wheels of numpy, onnxruntime and ai-edge-litert installed into
a folder beside it; an ARM ``/proc/cpuinfo`` in the sysroot (onnxruntime crashed
under qemu without one). Runs use ``QEMU_CPU=neoverse-n1`` (a Pi-5/Graviton-class
core; qemu's default ``max`` CPU, with SME, gave garbage int8 results). Everything
lives in ``$EDGERF_CACHE/arm64``.

Emulated time measures the emulator, not a device: those figures are labelled
``emulated`` and never sit beside real ones. On a real board run ``--device cpu``
there (``pip install 'edgerf[runtime]'``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgerf.runtime.errors import EdgerfError

QEMU_CPU = "neoverse-n1"
DEBS = ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libexpat1", "zlib1g",
        "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libstdc++6", "libgcc-s1", "libsqlite3-0", "libuuid1",
        "libcrypt1", "libncursesw6", "libtinfo6", "libreadline8", "libnsl2", "libtirpc3", "libdb5.3",
        "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libkrb5support0", "libcom-err2", "libkeyutils1"]
WHEELS = ["numpy", "onnxruntime", "ai-edge-litert"]
PLATFORMS = ["manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"]
CPUINFO = ("processor\t: {n}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
           "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
           "CPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n")


def home() -> Path:
    from edgerf.models import cache_dir
    return cache_dir() / "arm64"


def qemu() -> str | None:
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


def ready() -> bool:
    h = home()
    return bool(qemu()) and (h / "sysroot/usr/bin/python3.11").exists() and (h / "site/onnxruntime").exists()


def _run(cmd: list[str], log, **kw) -> None:
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise EdgerfError(f"arm64 set-up step failed: {' '.join(cmd)}\n{(r.stderr or r.stdout)[-800:]}")


def setup_sysroot(log=lambda s: None) -> Path:
    import sys
    h = home()
    debs, sysroot, site = h / "debs", h / "sysroot", h / "site"
    if not qemu():
        _run(["apt-get", "install", "-y", "-qq", "qemu-user-static"], log)
    if not shutil.which("qemu-aarch64"):       # the dynamic build loads TCG plugins (edgerf.bench.studies.arm_cost)
        _run(["apt-get", "install", "-y", "-qq", "qemu-user"], log)
    if not (sysroot / "usr/bin/python3.11").exists():
        _run(["dpkg", "--add-architecture", "arm64"], log)
        # a mirror mid-sync for another architecture's index must not stop this one: the
        # download below says whether what arm64 needs is there
        r = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
        if r.returncode != 0:
            log(f"apt-get update reported: {(r.stderr or r.stdout).strip()[-300:]}")
        debs.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", *[f"{d}:arm64" for d in DEBS]], log, cwd=debs)
        sysroot.mkdir(parents=True, exist_ok=True)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(sysroot)], log)
    (sysroot / "proc").mkdir(parents=True, exist_ok=True)
    (sysroot / "proc/cpuinfo").write_text("\n".join(CPUINFO.format(n=i) for i in range(4)))
    if not (site / "onnxruntime").exists():
        plat = [a for p in PLATFORMS for a in ("--platform", p)]
        _run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), *plat, "--python-version", "3.11",
              "--only-binary=:all:", *WHEELS], log)
    log(f"arm64 emulation ready in {h}")
    return h


def guest_python(qemu_binary: str, args: list[str], qemu_args: tuple[str, ...] = ()) -> tuple[list[str], dict]:
    """The command and environment that run the aarch64 Python of the set-up with ``args``,
    importing this source tree and the aarch64 wheels."""
    import edgerf
    h = home()
    env = dict(os.environ, QEMU_CPU=QEMU_CPU, PYTHONPATH=f"{h / 'site'}:{Path(edgerf.__file__).resolve().parents[1]}")
    return [qemu_binary, *qemu_args, "-L", str(h / "sysroot"), str(h / "sysroot/usr/bin/python3.11"), *args], env


def run_arm64(artifacts, ckpt, cfg, progress, log) -> dict:
    from edgerf.bench.run import BenchRun, accuracy_metrics, run_bench

    if not ready():
        raise EdgerfError("arm64 emulation is not set up: run `edgerf bench --device arm64 --setup` once "
                          "(needs apt and root), or run `edgerf bench --device cpu` on the ARM board itself.")
    run = run_bench(artifacts, ckpt, replace(cfg, device="cpu", rss=False), progress, log)
    x86, targets, stream = run.report, run.targets, run.stream
    if stream is None:
        raise EdgerfError("the arm64 check compares trajectories, so it needs accuracy data (a dataset or the "
                          "evaluation bundle); drop --no-accuracy.")
    runtime_targets = [t for t in targets if t.name != "torch"]
    from edgerf.runtime.manifest import read as read_manifest
    threshold = float(read_manifest(runtime_targets[0].path)["decision"]["threshold"])
    ref = next((t.result["logits"] for t in targets if t.name == "torch"), None)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "frames.npz", x=stream.x)
        cmd, env = guest_python(qemu(), ["-m", "edgerf.runtime.replay", str(Path(tmp) / "frames.npz"),
                                         str(Path(tmp) / "out.npz"), *[str(t.path) for t in runtime_targets],
                                         "--threads", str(cfg.threads)])
        log(f"running {len(runtime_targets)} artifacts over {len(stream):,} steps under qemu ({QEMU_CPU}) ...")
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise EdgerfError(f"the emulated run failed:\n{r.stderr[-1500:]}")
        with np.load(Path(tmp) / "out.npz") as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arm = {k: (z[f"logits_{k}"], z[f"step_ns_{k}"]) for k in range(len(runtime_targets))}
    from edgerf.bench.latency import Latency, LatencyStats
    rows = []
    for k, t in enumerate(runtime_targets):
        logits, ns = arm[k]
        x86_logits = t.result["logits"]
        reference = ref if ref is not None else x86_logits
        lat = Latency(LatencyStats.of(ns), [LatencyStats.of(w) for w in np.array_split(ns, 5)], 0.0, 0.0)
        rows.append({
            "target": t.name, "file": t.path.name, "precision": t.precision, "latency": lat.to_dict(),
            "latency_is": "EMULATED (qemu-user): measures the emulator, not an ARM core; 'windows' are "
                          "5 equal slices of one pass over the accuracy stream",
            "steps_per_s": lat.steps_per_s, "size_bytes": t.result["size_bytes"], "threads": cfg.threads,
            "accuracy": accuracy_metrics(logits, reference, stream, threshold),
            "vs_x86": {"argmax_agreement_all": float((logits.argmax(-1) == x86_logits.argmax(-1)).mean()),
                       "max_abs_logits_diff": float(np.abs(logits - x86_logits).max()),
                       "bit_identical": bool(np.array_equal(logits, x86_logits))},
        })
    report = {**{k: v for k, v in x86.items() if k not in ("targets", "machine")},
              "device": "arm64", "emulated": True, "qemu_cpu": QEMU_CPU,
              "machine": {**x86["machine"], "emulated_python": meta.get("python"),
                          "emulated_versions": {k: v for k, v in meta.items() if k not in ("machine", "python")},
                          "cpu": f"qemu {QEMU_CPU} on {x86['machine']['cpu']}", "arch": meta.get("machine"),
                          "isa_flags": CPUINFO.split("Features\t: ")[1].split("\n")[0].split(),
                          "host_isa_flags": x86["machine"]["isa_flags"]},
              "targets": rows,
              "x86_accuracy": {r["target"]: r.get("accuracy") for r in x86["targets"]}}
    return BenchRun(report, [], None)   # emulated timings: no plots beside them
