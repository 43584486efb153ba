"""Options are checked where they are declared: every numeric option of the config tables
carries its range, and a value outside it (NaN and infinities included) is exit 2 naming
the option, before any work and any write."""

import dataclasses

import pytest
from typer.testing import CliRunner

from edgerf.cli import app
from edgerf.configs import BenchConfig, Budget, ExportConfig, TrainConfig, check_options
from edgerf.models import BUILTIN_DIR

NUMERIC = ("int", "float", "int | None", "float | None")
COMMANDS = {TrainConfig: "train", ExportConfig: "export", Budget: "export", BenchConfig: "bench"}


def _numeric_options():
    for cls, cmd in COMMANDS.items():
        for f in dataclasses.fields(cls):
            if "help" in f.metadata and f.type in NUMERIC:
                yield cls, cmd, f


OPTIONS = list(_numeric_options())


def test_every_numeric_option_declares_its_range():
    assert len(OPTIONS) >= 30
    assert not [f"{c.__name__}.{f.name}" for c, _, f in OPTIONS if not f.metadata.get("within")]


@pytest.mark.parametrize("cls, cmd, f", OPTIONS, ids=[f"{c}-{f.name}" for _, c, f in OPTIONS])
def test_nan_infinity_and_out_of_range_are_exit_2_before_any_write(tmp_path, cls, cmd, f):
    flag = "--" + f.name.replace("_", "-")
    lo, hi, *_ = f.metadata["within"]
    base = {"train": ["train", "-o", str(tmp_path / "m.pt")],
            "export": ["export", str(BUILTIN_DIR / "default-gru.pt"), "--output", str(tmp_path / "out"), "--int8"],
            "bench": ["bench", "--report", str(tmp_path / "rep")]}[cmd]
    bad = ["nan", "inf", "-inf", str(hi * 2 + 1), str(lo - 1)] if f.type.startswith("float") \
        else [str(int(hi) * 2 + 1), str(int(lo) - 1)]
    for value in bad:
        r = CliRunner().invoke(app, [*base, flag, value])
        assert r.exit_code == 2, (flag, value, r.output)
        assert flag in r.output or "Invalid value" in r.output, (flag, value, r.output)
    assert not list(tmp_path.iterdir())                     # nothing written, nothing started


def test_export_name_cannot_leave_its_folder(tmp_path):
    for name in ("../evil", "a/b", ".hidden", "..", ""):
        r = CliRunner().invoke(app, ["export", str(BUILTIN_DIR / "default-gru.pt"), "--output", str(tmp_path / "o"),
                                     "--name", name])
        assert r.exit_code == 2 and "--name" in r.output, (name, r.output)
    assert not (tmp_path / "o").exists() and not (tmp_path / "evil").exists()


def test_check_options_refuses_nan_in_library_use():
    with pytest.raises(ValueError, match="--lr"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="--max-acc-p-drop"):
        check_options(Budget(max_acc_p_drop=float("nan")))
