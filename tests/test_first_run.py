"""What a new user meets first: the shipped built-ins, the runtime page's snippet, --help that
lists the real choices, `python -m edgerf`, and a device install that says what is
missing instead of printing a traceback."""

import hashlib
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import run_blocked
from edgerf.runtime import manifest
from edgerf.runtime.bundle import read as read_bundle
from edgerf.checkpoint import load as load_checkpoint
from edgerf.cli import app
from edgerf.models import BUILTIN_DIR, BUILTINS, DEMO_RECORDING, DEMO_TRUTH, builtin_artifact

ROOT = Path(__file__).resolve().parents[1]
HOST_ONLY = ("torch", "onnx", "onnxscript", "matplotlib")
# What ships in the package folder: a budget, so the built-ins stay "a few MB".
SHIPPED_BUDGET_BYTES = 8_000_000


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_ship_exported_and_consistent(name):
    """Every shipped artifact is the one its manifest describes, from the shipped checkpoint."""
    ck = load_checkpoint(BUILTIN_DIR / f"{name}.pt")
    files = sorted(BUILTIN_DIR.glob(f"{name}.*"))
    kinds = {p.name.removeprefix(name) for p in files}
    assert {".onnx", ".int8.onnx", ".tflite", ".int8.tflite", ".bundle.npz", ".pt"} <= kinds
    for art in (p for p in files if p.suffix in (".onnx", ".tflite")):
        m = manifest.read(art)
        assert m["source"]["checkpoint_sha256"] == ck.sha256, art.name
        assert m["artifact"]["sha256"] == manifest.file_sha256(art), f"{art.name} differs from its manifest"
    assert read_bundle(BUILTIN_DIR / f"{name}.bundle.npz").meta["checkpoint_sha256"] == ck.sha256
    assert ck.training["command"].startswith(f"edgerf train --task {ck.task['name']}")


def test_shipped_size_stays_small():
    total = sum(p.stat().st_size for p in BUILTIN_DIR.iterdir() if p.is_file() and p.suffix != ".py")
    assert total < SHIPPED_BUDGET_BYTES, f"{total / 1e6:.2f} MB ship in {BUILTIN_DIR}"


def test_kws_builtin_records_how_it_was_made_and_its_false_alarms():
    ck = load_checkpoint(BUILTIN_DIR / "kws-gru.pt")
    assert ck.training["command"].startswith("edgerf train --task gsc --model gru --loss reset-free")
    (rec,) = ck.results["test"]
    assert rec["eval"] == "no-reset" and rec["steps"] >= 10_000
    assert rec["acc_p"] > 0.6 and rec["false_alarm"] < 0.02


def test_demo_recording_is_real_and_attributed():
    # the recording every figure about it rests on stays the same file (a rebuild must not move it)
    assert hashlib.sha256(DEMO_RECORDING.read_bytes()).hexdigest() == \
        "95b09a268940c3bbd76c7dbb654080361f85999eb2554775f9fb004ca17a1bc5"
    truth = json.loads(DEMO_TRUTH.read_text())
    assert 10 <= truth["seconds"] <= 30 and len(truth["words"]) >= 5
    assert "CC BY 4.0" in (BUILTIN_DIR / "ATTRIBUTION.md").read_text()
    for w in truth["words"]:
        assert w["file"] in (BUILTIN_DIR / "ATTRIBUTION.md").read_text()


def test_stream_finds_keywords_in_the_demo_recording_out_of_the_box(tmp_path):
    """`edgerf stream kws-gru` with no file: the built-in recording, keywords with times."""
    r = subprocess.run([sys.executable, "-m", "edgerf", "stream", "kws-gru", "--plot", str(tmp_path / "k.png")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    truth = json.loads(DEMO_TRUTH.read_text())["words"]
    assert events and all(e["end_s"] > e["start_s"] >= 0 for e in events)
    hits = sum(any(e["name"] == w["word"] and e["start_s"] < w["end_s"] + 0.3 and e["end_s"] > w["start_s"]
                   for e in events) for w in truth)
    # a real model on real speakers it never heard: most words, not necessarily all
    assert hits >= len(truth) // 2, (hits, events)
    assert (tmp_path / "k.png").stat().st_size > 10_000


def test_the_runtime_page_snippet_runs_verbatim_without_torch(tmp_path):
    text = (ROOT / "docs" / "runtime.md").read_text()
    section = text[text.index("## Stepping a model"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    r = run_blocked(f"import os; os.chdir({str(tmp_path)!r})\n" + code, HOST_ONLY)
    assert r.returncode == 0, r.stderr
    assert "Event(" in r.stdout
    assert (tmp_path / "state.npz").exists()


def test_help_lists_the_real_choices(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")          # rich wraps help at the terminal's width
    from edgerf.cells import FAMILIES
    from edgerf.loss import TRAINING_MODES
    from edgerf.tasks import TASKS

    out = CliRunner().invoke(app, ["train", "--help"]).output
    for names in (TASKS, FAMILIES, TRAINING_MODES):
        assert "|".join(names) in out
    r = CliRunner().invoke(app, ["train", "-o", "x.pt", "--model", "lstm"])
    assert r.exit_code == 2 and "lstm" in r.output


def test_python_dash_m_edgerf():
    r = subprocess.run([sys.executable, "-m", "edgerf", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("edgerf ")


def test_licence_file_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0" and "Apache License" in (ROOT / "LICENSE").read_text()[:200]


@pytest.mark.parametrize("args", [["train", "-o", "x.pt"], ["export", "x.pt"], ["plot", "x.pt", "-o", "x.png"]])
def test_host_commands_on_a_device_install_say_which_extra(args, tmp_path):
    code = f"""
        import sys
        sys.argv = ["edgerf", *{args!r}]
        from edgerf.cli import main
        main()
    """
    r = run_blocked(f"import os; os.chdir({str(tmp_path)!r})\n" + textwrap.dedent(code), HOST_ONLY)
    assert r.returncode == 2, r.stderr
    assert "edgerf[host]" in r.stderr and "Traceback" not in r.stderr


def test_device_bench_and_stream_of_the_builtins_without_torch(tmp_path):
    code = """
        import sys
        from typer.testing import CliRunner
        from edgerf.cli import app
        r = CliRunner().invoke(app, ["bench", "--seconds", "0.05", "--steps", "500", "--no-rss", "-q"])
        assert r.exit_code == 0, r.output
        assert "torch" not in r.stdout.split("reference")[0] or True
        print(r.stdout)
    """
    r = run_blocked(textwrap.dedent(code), HOST_ONLY)
    assert r.returncode == 0, r.stderr
    for target in ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"):
        assert target in r.stdout


def test_missing_onnxruntime_is_a_clean_refusal():
    code = f"""
        from edgerf.runtime import StepModel
        from edgerf.runtime.errors import ArtifactError
        try:
            StepModel.load({str(builtin_artifact("default-gru").with_name("default-gru.onnx"))!r})
        except ArtifactError as e:
            print("refused:", e)
    """
    r = run_blocked(textwrap.dedent(code), HOST_ONLY + ("onnxruntime",))
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "pip install onnxruntime" in r.stdout


def test_a_live_streams_plot_keeps_a_bounded_tail_and_draws_it_in_stream_time(tmp_path):
    """`stream - --plot` on a live stream kept every step and every event for the plot (and the
    events without --plot too), without end; it keeps the last steps and their events, and the
    plot's time axis says where in the stream they are."""
    import numpy as np

    from edgerf.bench.render import StreamTail, plot_detections

    tail, rng = StreamTail(1000), np.random.default_rng(0)
    sizes = rng.integers(1, 90, 200)
    frames = np.arange(int(sizes.sum()) * 3, dtype=np.float32).reshape(-1, 3)
    at = 0
    for n in sizes:
        tail(frames[at:at + n], np.full((n, 2), 0.5, np.float32))
        at += n
    f, p = tail.arrays()
    assert 1000 <= len(f) < 1000 + sizes.max() and tail.first == at - len(f) > 0
    np.testing.assert_array_equal(f, frames[tail.first:])
    # the events it keeps are those that end in the tail: every event was kept, without end
    for start in range(0, at - 3, 7):
        tail.event({"label": 1, "name": "b", "start": start, "end": start + 3})
    assert [e["end"] for e in tail.events] == [e for e in range(3, at, 7) if e >= tail.first]
    png = plot_detections(f, p, list(tail.events), ["a", "b"], tmp_path / "tail.png", 0.65, 0.04, None, tail.first)
    assert png.stat().st_size > 10_000


def test_export_and_plot_take_a_built_in_name_as_stream_bench_and_inspect_do(tmp_path):
    """`edgerf export kws-gru` and `edgerf plot default-gru` looked for a file of that name (every
    other command takes the built-in names); an export of a built-in needs -o, as beside its
    checkpoint is the installed package."""
    r = CliRunner().invoke(app, ["export", "kws-gru", "--format", "onnx"])
    assert r.exit_code == 2 and "-o" in r.output
    r = CliRunner().invoke(app, ["export", "kws-gru", "-o", str(tmp_path / "k"), "--format", "onnx", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "k" / "kws-gru.onnx.json").read_text())["source"]["checkpoint_sha256"] == \
        json.loads((BUILTIN_DIR / "kws-gru.onnx.json").read_text())["source"]["checkpoint_sha256"]
    r = CliRunner().invoke(app, ["plot", "default-gru", "-o", str(tmp_path / "p.png"), "--steps", "200"])
    assert r.exit_code == 0 and (tmp_path / "p.png").stat().st_size > 10_000, r.output


def test_a_plot_is_written_in_the_format_its_suffix_names(tmp_path):
    """Every plot was written as PNG whatever its name: x.jpg held a PNG, x.txt too. The suffix
    picks the format (none: PNG); one that is no image format is refused before any work."""
    for name, magic in (("p.svg", b"<?xml"), ("p.jpg", b"\xff\xd8"), ("p", b"\x89PNG")):
        r = CliRunner().invoke(app, ["plot", "default-gru", "-o", str(tmp_path / name), "--steps", "100"])
        assert r.exit_code == 0 and (tmp_path / name).read_bytes().startswith(magic), r.output
    for args in (["plot", "default-gru", "-o", str(tmp_path / "p.txt")],
                 ["stream", "kws-gru", "--plot", str(tmp_path / "p.txt")]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and ".txt is none of them" in r.output and "steps" not in r.output, r.output
    assert not (tmp_path / "p.txt").exists()


def test_plot_and_report_refuse_to_overwrite(tmp_path):
    png = tmp_path / "k.png"
    png.write_bytes(b"keep")
    r = CliRunner().invoke(app, ["stream", "kws-gru", "--plot", str(png)])
    assert r.exit_code == 2 and "--force" in r.output and png.read_bytes() == b"keep"
    r = CliRunner().invoke(app, ["plot", str(BUILTIN_DIR / "default-gru.pt"), "-o", str(png)])
    assert r.exit_code == 2 and png.read_bytes() == b"keep"
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "bench.md").write_text("keep")
    r = CliRunner().invoke(app, ["bench", "--report", str(tmp_path / "rep"), "--no-rss", "-q"])
    assert r.exit_code == 2 and (tmp_path / "rep" / "bench.md").read_text() == "keep"
    # an export's --report that names one of the export's own files (its index, say) is refused
    # before any work: it once overwrote the index it had just written
    for own in ("default-gru.export.json", "default-gru.onnx.json", "default-gru.onnx"):
        r = CliRunner().invoke(app, ["export", str(BUILTIN_DIR / "default-gru.pt"), "-o", str(tmp_path / "x"),
                                     "--report", str(tmp_path / "x" / own)])
        assert r.exit_code == 2 and "--report" in r.output and not (tmp_path / "x").exists()


def test_a_file_that_is_not_a_checkpoint_gets_a_short_message(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    r = CliRunner().invoke(app, ["export", str(bad)])
    assert r.exit_code == 2 and "not an edgerf checkpoint" in r.output
    assert "weights_only" not in r.output


def test_the_bare_edgerf_command_says_which_extra_to_install():
    """`pip install edgerf` (no extra) installs the command without typer: it must say what to
    install, not die with ModuleNotFoundError. The console script is edgerf.__main__:main."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["scripts"]["edgerf"] == "edgerf.__main__:main"
    code = "import sys; sys.argv = ['edgerf', 'stream', 'kws-gru']\nfrom edgerf.__main__ import main\nmain()\n"
    r = run_blocked(code, HOST_ONLY + ("typer",))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert 'edgerf[runtime]' in r.stderr and 'edgerf[host]' in r.stderr


def test_stream_runs_a_checkpoint_through_torch_and_says_so():
    """A trained checkpoint can be tried on a recording before export: torch steps it, the
    runtime featurizes and detects; its events are those of its fp32 export."""
    ck = CliRunner().invoke(app, ["stream", str(BUILTIN_DIR / "kws-gru.pt"), str(DEMO_RECORDING)])
    onnx = CliRunner().invoke(app, ["stream", str(BUILTIN_DIR / "kws-gru.onnx"), str(DEMO_RECORDING)])
    assert ck.exit_code == 0 and onnx.exit_code == 0, ck.output
    assert "run in torch" in ck.stderr
    names = [[json.loads(ln)["name"] for ln in r.stdout.splitlines()] for r in (ck, onnx)]
    assert len(names[0]) >= 5 and names[0] == names[1]


def test_a_builtin_name_resolves_to_what_the_installed_runtime_runs():
    """With only ONNX Runtime installed (edgerf[runtime]), `edgerf stream kws-gru` runs an ONNX
    graph instead of refusing for want of LiteRT: int8 where the export timed it no slower than
    fp32 on ONNX Runtime, else fp32 (its sidecar says which)."""
    import json as js
    rec = js.loads((BUILTIN_DIR / "kws-gru.int8.onnx.json").read_text())["precision"]
    row = next(t for t in rec["tried"] if t["plan"] == rec["plan"])
    want = "kws-gru.int8.onnx" if row["closed_loop_us"] <= row["closed_loop_us_fp32"] else "kws-gru.onnx"
    code = textwrap.dedent("""
        import sys
        from edgerf.models import builtin_artifact
        print(builtin_artifact("kws-gru").name)
        sys.argv = ["edgerf", "stream", "kws-gru"]
        from edgerf.__main__ import main
        main()
    """)
    r = run_blocked(code, HOST_ONLY + ("ai_edge_litert", "tflite_runtime", "tflite_micro"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[0] == want and "on ort" in r.stderr
    assert len(r.stdout.splitlines()) >= 5                   # the demo's keywords, through ONNX Runtime


def test_events_are_keywords_unknown_speech_fires_none_unless_asked(tmp_path):
    """Ordinary speech that holds no keyword: a keyword tool reports nothing, not "_unknown_"."""
    import numpy as np

    from conftest import write_wav
    from edgerf.data.source import locate
    from edgerf.runtime.audio import read_wav

    root = locate("speech-commands").root
    clips = sorted((root / "_unknown_").glob("*.wav"))[:12]
    silence = np.zeros(4000, np.float32)
    write_wav(tmp_path / "talk.wav", np.concatenate([x for c in clips for x in (read_wav(c), silence)]))
    r = CliRunner().invoke(app, ["stream", "kws-gru", str(tmp_path / "talk.wav")])
    assert r.exit_code == 0, r.output
    assert "_unknown_" not in r.stdout
    r = CliRunner().invoke(app, ["stream", "kws-gru", str(tmp_path / "talk.wav"), "--all-classes"])
    assert r.exit_code == 0 and "_unknown_" in r.stdout, r.stdout
    m = manifest.read(builtin_artifact("kws-gru"))
    assert m["decision"]["keywords"] == [c for c in m["model"]["classes"] if c != "_unknown_"]


def test_live_pcm_on_stdin_in_any_chunk_sizes_gives_the_file_s_events(tmp_path):
    """`arecord -f S16_LE -r 16000 -c 1 | edgerf stream kws-gru -`: raw PCM on stdin, written in
    random chunk sizes (odd byte counts included), gives exactly the events of the file."""
    import random
    import wave

    with wave.open(str(DEMO_RECORDING), "rb") as w:
        pcm = w.readframes(w.getnframes())
    want = CliRunner().invoke(app, ["stream", "kws-gru", str(DEMO_RECORDING)]).stdout
    p = subprocess.Popen([sys.executable, "-m", "edgerf", "stream", "kws-gru", "-"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    rng, k = random.Random(3), 0
    while k < len(pcm):                      # the child reads as we write; its output is a few lines
        n = rng.randint(1, 9000)
        p.stdin.write(pcm[k:k + n])
        p.stdin.flush()
        k += n
    p.stdin.close()
    out, err = p.stdout.read(), p.stderr.read()
    p.wait(timeout=120)
    assert p.returncode == 0, err.decode()[-1500:]
    assert out.decode() == want and len(want.splitlines()) >= 5


def test_a_wav_stream_on_stdin_is_checked_and_read_past_its_header(tmp_path):
    """`arecord` writes a WAV header unless told `-t raw`: piped in, its format is checked
    against the model (a wrong rate or channel count is refused, saying what to record) and
    the samples after it give the file's events; raw PCM that ends inside a sample is an
    error after the events it held."""
    import wave

    import numpy as np

    from edgerf.runtime.audio import stream_wav_header
    from edgerf.runtime.errors import DataError

    wav = DEMO_RECORDING.read_bytes()
    with wave.open(str(DEMO_RECORDING), "rb") as w:
        pcm = w.readframes(w.getnframes())
    start = len(wav) - len(pcm)
    # the header split anywhere: undecided until the data chunk's header has arrived
    assert [stream_wav_header(wav[:k], 16000) for k in range(start)] == [None] * start
    assert stream_wav_header(wav[:start], 16000) == start and stream_wav_header(pcm[:100], 16000) == 0
    with pytest.raises(DataError, match="44100 Hz"):
        stream_wav_header(wav[:start].replace((16000).to_bytes(4, "little"), (44100).to_bytes(4, "little"), 1), 16000)

    want = CliRunner().invoke(app, ["stream", "kws-gru", str(DEMO_RECORDING)]).stdout
    r = CliRunner().invoke(app, ["stream", "kws-gru", "-"], input=wav)
    assert r.exit_code == 0, r.output
    assert r.stdout == want and len(want.splitlines()) >= 5

    with wave.open(str(tmp_path / "stereo.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.zeros(32000, "<i2").tobytes())
    r = CliRunner().invoke(app, ["stream", "kws-gru", "-"], input=(tmp_path / "stereo.wav").read_bytes())
    assert r.exit_code == 2 and "2 channel(s)" in r.output and "-c 1" in r.output

    # input that goes bad at its end: exit 2, after every event, the one still open included,
    # and with the state of the good input saved (both were lost before)
    r = CliRunner().invoke(app, ["stream", "kws-gru", "-", "--state", str(tmp_path / "s.npz")], input=pcm + b"\x01")
    assert r.exit_code == 2 and "stray byte" in r.output
    assert r.stdout == want and (tmp_path / "s.npz").exists()


def test_every_way_a_pipe_may_split_a_wav_header_reads_the_same():
    """A pipe may deliver a header a byte at a time: every prefix of a WAV stream's header is
    undecided until its data chunk's header is whole, for the plain, extensible (what sox and
    ffmpeg write for some formats), RF64 and LIST-carrying headers alike; other formats are
    refused by what they hold, whole or split (an extensible header split inside its
    extension was refused as "format 65534")."""
    import struct

    from edgerf.runtime.audio import stream_wav_header
    from edgerf.runtime.errors import DataError

    def header(code=1, bits=16, extensible=False, tag=b"RIFF", extra=b""):
        fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else code, 1, 16000, 16000 * bits // 8, bits // 8, bits)
        if extensible:      # cbSize 22, valid bits, channel mask, then the subformat GUID (its code first)
            fmt += struct.pack("<HHIH", 22, bits, 4, code) + bytes(14)
        return (tag + b"\xff\xff\xff\xff" + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
                + b"data\xff\xff\xff\xff")

    for h in (header(), header(extensible=True), header(tag=b"RF64"), header(extra=b"LIST\x05\0\0\0abcde\0")):
        assert [stream_wav_header(h[:k], 16000) for k in range(len(h))] == [None] * len(h)
        assert stream_wav_header(h + b"\0\0", 16000) == len(h)
    for h, said in ((header(code=3, bits=32), "32-bit float"), (header(3, 32, extensible=True), "32-bit float"),
                    (header(tag=b"RIFX"), "big-endian")):
        with pytest.raises(DataError, match=said):
            for k in range(1, len(h) + 1):
                stream_wav_header(h[:k], 16000)


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_live_stream_stopped_by_a_signal_saves_its_state(tmp_path, sig, code):
    """A live stream ends by Ctrl-C or its service manager's SIGTERM, not by end of input: the
    events so far are printed, --state is saved (and resumes), and the exit code says which."""
    import signal
    import wave

    from edgerf.runtime import StepModel

    with wave.open(str(DEMO_RECORDING), "rb") as w:
        pcm = w.readframes(w.getnframes())
    state = tmp_path / "live.state.npz"
    p = subprocess.Popen([sys.executable, "-m", "edgerf", "stream", "kws-gru", "-", "--state", str(state)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(pcm)
    p.stdin.flush()                          # stdin stays open: the microphone is still on
    first = p.stdout.readline()              # an event: the audio is being stepped
    p.send_signal(getattr(signal, sig))
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err.decode()[-1500:]
    assert json.loads(first)["name"] and b"stopped by a signal, state saved" in err and b"Traceback" not in err
    m = StepModel.load(builtin_artifact("kws-gru"))
    assert m.resume(state) and m.steps > 0


def test_every_option_help_is_printed_as_written(monkeypatch):
    """Help is printed, never interpreted: '[min, max]' once vanished as a markup tag."""
    import typer.main

    monkeypatch.setenv("COLUMNS", "250")
    group = typer.main.get_command(app)
    checked = 0
    for name, cmd in group.commands.items():
        out = "".join(CliRunner().invoke(app, [name, "--help"]).output.split())    # wrapping may split words
        for param in cmd.params:
            if text := getattr(param, "help", None):
                assert "".join(text.split()) in out, f"edgerf {name} --help lost part of {param.name}'s help"
                checked += 1
    assert checked > 50


def test_inspect_states_the_keyword_models_test_figures_and_operating_point():
    """`edgerf inspect kws-gru` says what the model scored on speakers it never heard, where it
    decides, and what its false-accept figure rests on (duration and 95% upper bound)."""
    r = CliRunner().invoke(app, ["inspect", "kws-gru"])
    assert r.exit_code == 0, r.output
    test = json.loads((BUILTIN_DIR / "kws-gru.int8.tflite.json").read_text())["source"]["test"][0]
    assert f"acc_p {test['acc_p']:.4f}" in r.output and "test (no-reset, torch fp32" in r.output
    assert "operating point: window" in r.output and "chosen on val" in r.output
    assert f"{test['background_fa']['seconds']:.0f} s of distinct audio" in r.output and "95% upper bound" in r.output
