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
        "assert not any(v is not None and k.split('.')[0] in ('torch', 'onnx') for k, v in sys.modules.items())\n" \
        "print('ok')\n"
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


def test_no_module_outside_the_studies_imports_a_study():
    """The studies (bench/studies/) produce committed results; the package never depends on
    them (tests may exercise them, as they do every module)."""
    from pathlib import Path
    root = Path(edgerf.__file__).resolve().parents[1]
    studies = root / "bench" / "studies"
    package = [f for d in ("edgerf", "export", "bench", "examples") for f in (root / d).rglob("*.py")
               if studies not in f.parents]
    assert len(package) > 40
    users = {str(f.relative_to(root)): sorted(m for m in _edgerf_imports(f) if m.startswith("edgerf.bench.studies"))
             for f in package}
    assert not any(users.values()), {k: v for k, v in users.items() if v}


def test_the_results_index_lists_every_committed_result():
    """bench/results/README.md names each file (``{a,b}`` groups extensions) and its command."""
    import re
    from pathlib import Path
    results = Path(edgerf.__file__).resolve().parents[1] / "bench" / "results"
    index = (results / "README.md").read_text()
    listed = set()
    for name in re.findall(r"`([\w./*-]+(?:\{[\w,]+\})?[\w./-]*)`", index):
        m = re.match(r"(.*)\{([\w,]+)\}(.*)", name)
        listed |= {m.group(1) + ext + m.group(3) for ext in m.group(2).split(",")} if m else {name}
    missing = [str(p.relative_to(results)) for p in results.iterdir()
               if p.name not in ("README.md", "archive") and p.name not in listed and p.name + "/" not in listed]
    assert not missing, f"not in bench/results/README.md: {missing}"
    archived = [p.name for p in (results / "archive").iterdir()]
    assert all(any(n.startswith(g.rstrip("*")) for g in re.findall(r"`([\w-]+)\*`", index)) for n in archived)


def test_each_result_is_cited_where_the_index_says():
    import re
    from pathlib import Path
    root = Path(edgerf.__file__).resolve().parents[1]
    rows = [ln for ln in (root / "bench" / "results" / "README.md").read_text().splitlines() if ln.startswith("| `")]
    assert len(rows) >= 15
    for row in rows:
        files, _, pages = [c.strip() for c in row.strip("|").split("|")]
        for page in (p.strip() for p in pages.split(",")):
            text = (root / page).read_text()
            for f in re.findall(r"`([^`]+)`", files):
                assert re.split(r"[.{]", f)[0].rstrip("/") in text, f"{f} is not cited in {page}"
