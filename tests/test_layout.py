"""The package's boundary: every module outside ``edgerf.HOST_SIDE`` is device side and
imports with numpy and one interpreter only."""

import importlib
import pkgutil

import edgerf
from conftest import run_blocked


def _modules() -> list[str]:
    names = []
    for pkg in ("edgerf", "edgerf.export", "edgerf.bench"):
        names += [pkg] + [m.name for m in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + ".")]
    return sorted(set(n for n in names if not n.endswith("__main__")))


def test_every_device_module_imports_without_torch_or_onnx():
    device = [m for m in _modules() if not m.startswith(edgerf.HOST_SIDE)]
    assert "edgerf.runtime.model" in device and "edgerf.bench.run" in device and "edgerf.cli" in device
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in device) + \
        "assert not any(k.split('.')[0] in ('torch', 'onnx') for k in sys.modules)\nprint('ok')\n"
    r = run_blocked(code, ("torch", "onnx", "onnxscript"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-1500:]


def test_the_host_side_list_names_real_modules_that_need_torch():
    found = _modules()
    for host in edgerf.HOST_SIDE:
        assert host in found, host
    r = run_blocked("import edgerf.train", ("torch",))
    assert r.returncode != 0 and "blocked torch" in r.stderr


def _edgerf_imports(path) -> set[str]:
    """Every edgerf module a file imports, at any depth (function-level imports included)."""
    import ast
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "edgerf"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "edgerf":
            found |= {f"{node.module}.{a.name}" if node.module == "edgerf" else node.module for a in node.names}
    return found


def test_the_runtime_imports_nothing_from_edgerf_outside_it():
    from pathlib import Path
    runtime = Path(edgerf.__file__).parent / "runtime"
    files = sorted(runtime.rglob("*.py"))
    assert len(files) >= 10
    outside = {f.name: sorted(m for m in _edgerf_imports(f)
                              if not m.startswith("edgerf.runtime") and m not in ("edgerf.__version__",))
               for f in files}
    assert not any(outside.values()), {k: v for k, v in outside.items() if v}
