"""32-bit ARM (armv7, armhf) under user-mode emulation: the built-ins on Debian's own
python3 and python3-numpy, and nothing else (PyPI has no armv7l wheel of onnxruntime or
ai-edge-litert, so there the runtime is the numpy backend).

    python -m edgerf.bench.armhf --setup          # once (make armhf): needs apt and root
    python -m edgerf.bench.armhf [--steps 2000]   # writes bench/results/armhf.{md,json}

Set-up: Debian's qemu-user-static, and Debian bookworm's armhf python3.11, python3-numpy and
the libraries they link, unpacked into ``$EDGERF_CACHE/armhf/sysroot`` (with the BLAS and
LAPACK links that update-alternatives would make on a real system). The guest imports this
source tree. The run compares, for each built-in's int8 TFLite graph, the logits of every
step on armv7 (numpy backend) with x86 (TFLite Micro and the numpy backend), and the events
the keyword example prints. Emulated time measures the emulator: labelled so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgerf.bench.report import result_file
from edgerf.runtime.errors import EdgerfError

DEBS = ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "python3-numpy", "libblas3",
        "liblapack3", "libgfortran5", "libc6", "libexpat1", "zlib1g", "libffi8", "libssl3", "libbz2-1.0",
        "liblzma5", "libgcc-s1", "libcrypt1", "libstdc++6", "libsqlite3-0", "libuuid1", "libncursesw6",
        "libtinfo6", "libreadline8", "libnsl2", "libtirpc3", "libdb5.3"]
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def home() -> Path:
    from edgerf.models import cache_dir
    return cache_dir() / "armhf"


def qemu() -> str | None:
    return shutil.which("qemu-arm-static") or shutil.which("qemu-arm")


def ready() -> bool:
    return bool(qemu()) and (home() / "sysroot/usr/lib/python3/dist-packages/numpy").exists()


def _run(cmd: list[str], log, **kw) -> None:
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise EdgerfError(f"armhf set-up step failed: {' '.join(cmd)}\n{(r.stderr or r.stdout)[-800:]}")


def setup(log=print) -> Path:
    h = home()
    debs, sysroot = h / "debs", h / "sysroot"
    if not qemu():
        _run(["apt-get", "install", "-y", "-qq", "qemu-user-static"], log)
    if not ready():
        _run(["dpkg", "--add-architecture", "armhf"], log)
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)      # a stale mirror index is not fatal
        debs.mkdir(parents=True, exist_ok=True)
        os.chmod(debs, 0o777)                                                # apt's sandbox user writes here
        _run(["apt-get", "download", *[f"{d}:armhf" for d in DEBS]], log, cwd=debs)
        sysroot.mkdir(parents=True, exist_ok=True)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(sysroot)], log)
        lib = sysroot / "usr/lib/arm-linux-gnueabihf"
        for name in ("blas/libblas.so.3", "lapack/liblapack.so.3"):          # update-alternatives' links
            link = lib / Path(name).name
            if not link.exists():
                link.symlink_to(name)
    log(f"armhf emulation ready in {h}")
    return h


def guest(args: list[str]) -> tuple[list[str], dict]:
    """The command and environment that run Debian's armhf python3 on ``args``, importing
    this source tree and nothing from the host's site-packages."""
    h = home()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "PYTHONNOUSERSITE": "1",
           "EDGERF_CACHE": str(h / "cache"), "HOME": str(h)}
    return [qemu(), "-L", str(h / "sysroot"), str(h / "sysroot/usr/bin/python3.11"), *args], env


def run_guest(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    cmd, env = guest(args)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    if r.returncode != 0:
        raise EdgerfError(f"the armhf guest failed: {' '.join(args)}\n{r.stderr[-1500:]}")
    return r


def replay(artifact: Path, frames: np.ndarray, target: str | None, armhf: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """(logits [T, C], per-step ns, meta) of ``artifact`` over ``frames``, on armhf (the guest's
    default target) or on this host (``target``)."""
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "x.npz", x=frames)
        args = ["-m", "edgerf.runtime.replay", str(Path(tmp) / "x.npz"), str(Path(tmp) / "out.npz"), str(artifact)]
        if armhf:
            run_guest(args)
        else:
            subprocess.run([sys.executable, *args, *(["--target", target] if target else [])], check=True,
                           capture_output=True, cwd=ROOT)
        with np.load(Path(tmp) / "out.npz") as z:
            return z["logits_0"], z["step_ns_0"], json.loads(bytes(z["meta"]).decode())


def main(argv=None) -> int:
    import argparse

    from edgerf.models import BUILTIN_DIR, BUILTINS
    from edgerf.runtime.bundle import read as read_bundle

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", action="store_true", help="set up the emulated armhf userland (apt, root)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--out", type=Path, default=RESULTS / "armhf")
    a = p.parse_args(argv)
    if a.setup:
        setup()
        return 0
    if not ready():
        raise SystemExit("armhf emulation is not set up: make armhf (needs apt and root)")
    rows = []
    for name in sorted(BUILTINS):
        art = BUILTIN_DIR / f"{name}.int8.tflite"
        x = read_bundle(BUILTIN_DIR / f"{name}.bundle.npz").stream.x[:a.steps]
        arm, arm_ns, meta = replay(art, x, None, armhf=True)
        tflm, _, _ = replay(art, x, "tflm", armhf=False)
        host, host_ns, _ = replay(art, x, "numpy", armhf=False)
        rows.append({"artifact": art.name, "steps": len(x), "guest": meta,
                     "identical_to_x86_tflm": bool(np.array_equal(arm, tflm)),
                     "identical_to_x86_numpy": bool(np.array_equal(arm, host)),
                     "armhf_emulated_us_per_step": float(np.median(arm_ns)) / 1e3,
                     "x86_numpy_us_per_step": float(np.median(host_ns)) / 1e3})
    cmd, env = guest(["examples/keyword_loop.py"])
    guest_events = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800).stdout
    host_events = subprocess.run([sys.executable, "examples/keyword_loop.py", "--target", "numpy"],
                                 capture_output=True, text=True, cwd=ROOT).stdout
    report = {"rows": rows, "keyword_events_armhf": guest_events.splitlines(),
              "keyword_events_identical_to_x86": guest_events == host_events and bool(guest_events)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    result_file(a.out, ".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# The built-ins on 32-bit ARM (armv7), numpy alone", "",
             f"Produced by `python -m edgerf.bench.armhf --steps {a.steps}` (`make armhf` first): Debian bookworm's "
             "armhf python3 and python3-numpy under qemu-arm (user mode), no pip wheel, the runtime's numpy backend "
             "(the only target there). Each built-in's int8 TFLite graph over the first steps of its evaluation "
             "bundle, state fed back, compared step for step with this x86 host. Timings under emulation measure "
             "the emulator, not a board.", "",
             "| artifact | steps | guest | logits identical to x86 TFLite Micro | identical to x86 numpy | "
             "armv7 us/step (EMULATED) | x86 numpy us/step |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r["guest"]
        lines.append(f"| {r['artifact']} | {r['steps']:,} | {g['machine']}, Python {g['python']}, numpy {g['numpy']}, "
                     f"target {g.get('target')} | {r['identical_to_x86_tflm']} | {r['identical_to_x86_numpy']} | "
                     f"{r['armhf_emulated_us_per_step']:.0f} | {r['x86_numpy_us_per_step']:.0f} |")
    lines += ["", f"Keyword example (`examples/keyword_loop.py` on `kws-demo.wav`): {len(guest_events.splitlines())} "
              f"events on armv7, identical to x86: {report['keyword_events_identical_to_x86']}.", ""]
    lines += ["    " + e for e in guest_events.splitlines()]
    result_file(a.out, ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
