"""Beyond one process: `edgerf train` under torchrun (2 gloo ranks on CPU) matches one
process with the same total batch; `edgerf sweep` runs trials on a local Ray and resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from edgerf import checkpoint

TINY = ["--hidden", "8", "--epochs", "2", "--batch", "4", "--train-samples", "96", "--val-samples", "10",
        "--test-steps", "600", "-q"]
# Two ranks average two half-batch gradients where one process takes one mean over the
# whole batch: the same number up to float summation order, which a few hundred Adam
# steps may amplify a little.
LOSS_RTOL = 1e-4


def _train(args, cwd, nproc=None):
    cmd = [sys.executable, "-m", "edgerf", "train", *args]
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(29500 + os.getpid() % 1000), "-m", "edgerf", "train", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_and_only_rank_0_writes(tmp_path):
    _train(["-o", "one.pt", *TINY], tmp_path)
    two = _train(["-o", "two.pt", *TINY], tmp_path, nproc=2)
    a, b = checkpoint.load(tmp_path / "one.pt"), checkpoint.load(tmp_path / "two.pt")
    assert b.training["distributed"] == {"world_size": 2, "backend": "gloo", "device": "cpu"}
    assert a.training["distributed"]["world_size"] == 1
    for ha, hb in zip(a.training["history"], b.training["history"], strict=True):
        assert hb["loss"] == pytest.approx(ha["loss"], rel=LOSS_RTOL)
    ra, rb = a.results["test"][0], b.results["test"][0]
    assert rb["acc_p"] == ra["acc_p"] and rb["acc_f"] == pytest.approx(ra["acc_f"], abs=0.01)
    # rank 0 alone writes and prints: one result line, one checkpoint, no temporaries
    assert len([line for line in two.stdout.splitlines() if line.startswith("[")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.pt", "two.pt"]


def test_a_batch_that_does_not_divide_over_the_ranks_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(30500 + os.getpid() % 1000), "-m", "edgerf", "train", "-o", "x.pt",
                        *TINY[:4], "--batch", "3", "--train-samples", "96", "-q"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and "multiple" in r.stderr and not (tmp_path / "x.pt").exists()


SWEEP = ["sweep", "--models", "gru,rnn,lif", "--hidden", "8", "--epochs", "1", "--batch", "4", "--train-samples",
         "64", "--val-samples", "10", "--test-steps", "500"]


@pytest.mark.slow
def test_a_local_ray_sweep_writes_its_table_and_resumes_after_a_kill(tmp_path):
    pytest.importorskip("ray", reason="edgerf[sweep] (Ray Tune) is not installed")
    cmd = [sys.executable, "-m", "edgerf", *SWEEP, "-o", str(tmp_path / "sw")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not list((tmp_path / "sw").glob("*.pt")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)                   # the driver and its Ray workers
    p.wait()
    finished = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "sw").glob("*.pt")}
    assert finished, "no trial finished before the kill"
    # the resumed sweep runs a Ray of its own, never one that $RAY_ADDRESS (or /tmp/ray) names:
    # here a dead address, as a cluster record left behind by a killed run
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RAY_ADDRESS": "127.0.0.1:9"})
    assert r.returncode == 0, r.stderr[-2000:]
    # trials in flight when the driver died may still land (their writes are atomic)
    reused = int(r.stderr.split(" already finished")[0].rsplit("(", 1)[1])
    assert reused >= len(finished)
    for name, mtime in finished.items():               # reused, not retrained
        assert (tmp_path / "sw" / name).stat().st_mtime_ns == mtime
    rows = [json.loads(line) for line in (tmp_path / "sw" / "sweep.jsonl").read_text().splitlines()]
    assert sorted(r["model"] for r in rows) == ["gru", "lif", "rnn"]
    assert all(r["command"].startswith("edgerf train --task sfmnist --model") for r in rows)
    table = (tmp_path / "sw" / "sweep.md").read_text()
    assert table.count("| no-reset |") == 3


def test_sweep_without_ray_runs_in_a_local_pool(tmp_path):
    """A value listed twice is one trial (`--seeds 0,0` trained the same trial twice)."""
    r = subprocess.run([sys.executable, "-m", "edgerf", *SWEEP[:2], "gru,gru", *SWEEP[3:], "-o", str(tmp_path),
                        "--engine", "pool", "--seeds", "0,0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "on pool" in r.stderr and "1 trial in" in r.stderr and (tmp_path / "sweep.md").exists()


PIECES = ["--task", "sfmnist", "--hidden", "8", "--epochs", "2", "--batch", "4", "--bptt", "16",
          "--train-samples", "400", "--val-samples", "10", "--test-steps", "500", "--lane-piece", "8",
          "--workers", "1", "--save-every", "0", "-q"]


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once (a machine that dies stops them all)."""
    from edgerf.bench.rss import process_tree
    found = process_tree(pid)
    for q in found:
        try:
            os.kill(q, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _killed_then_resumed(tmp_path, nproc):
    """A run killed (SIGKILL, workers and ranks with it) once it has saved its state, then resumed."""
    cmd = [sys.executable, "-m", "edgerf", "train"]
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(31500 + os.getpid() % 1000), "-m", "edgerf", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([*cmd, "-o", "cut.pt", *PIECES], cwd=tmp_path, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "cut.pt.train-state"
    deadline = time.time() + 120
    while not state.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    _kill_tree(p.pid)          # torchrun's ranks run in sessions of their own: kill every process of the run
    p.wait()
    assert state.exists() and not (tmp_path / "cut.pt").exists(), "the run ended before it could be killed"
    r = subprocess.run([*cmd, "-o", "cut.pt", *PIECES, "--resume"], cwd=tmp_path, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-6000:]
    assert "resuming from" in r.stderr
    return checkpoint.load(tmp_path / "cut.pt")


@pytest.mark.parametrize("nproc", [None, 2])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, nproc):
    _train(["-o", "whole.pt", *PIECES], tmp_path, nproc=nproc)
    whole = checkpoint.load(tmp_path / "whole.pt")
    cut = _killed_then_resumed(tmp_path, nproc)
    a, b = whole.model.state_dict(), cut.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in whole.training["history"]] == [h["loss"] for h in cut.training["history"]]
    assert not list(tmp_path.glob("*.train-state*"))                # done: nothing left to resume


def test_a_damaged_training_state_is_refused_saying_what_to_do(tmp_path):
    """`--resume` read the training state with a bare torch.load: a state cut short (a disk that
    filled, a copy interrupted) was a RuntimeError traceback. Every torch file edgerf reads is
    read one way (edgerf.checkpoint.read_payload): refused, saying to start again."""
    _train(["-o", "ok.pt", *PIECES], tmp_path)
    state = tmp_path / "cut.pt.train-state"
    for content in (b"", b"PK\x03\x04" + bytes(500), (tmp_path / "ok.pt").read_bytes()[:700]):
        state.write_bytes(content)
        r = subprocess.run([sys.executable, "-m", "edgerf", "train", "-o", "cut.pt", *PIECES, "--resume"],
                           cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "not an edgerf training state" in r.stderr and "without --resume" in r.stderr, r.stderr[-500:]
    state.write_bytes((tmp_path / "ok.pt").read_bytes())        # a checkpoint is not a training state
    r = subprocess.run([sys.executable, "-m", "edgerf", "train", "-o", "cut.pt", *PIECES, "--resume"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "not an edgerf training state" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_says_what_is_left_to_resume(tmp_path):
    """Ctrl-C ended a run with exit 130 and not a word: now one line says the checkpoint was not
    written and where the training state is that --resume continues (or that there is none)."""
    p = subprocess.Popen([sys.executable, "-m", "edgerf", "train", "-o", "cut.pt", *PIECES], cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "cut.pt.train-state"
    deadline = time.time() + 120
    while not state.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert "cut.pt not written" in err and "cut.pt.train-state" in err and "--resume" in err, err[-500:]
