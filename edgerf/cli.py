"""The ``edgerf`` command line. Each command checks its options, builds a config,
calls one library function and prints or saves what it returns; heavy imports
(torch, onnx) happen inside the commands so ``--help`` is instant and the device
side never loads the host side.

Exit codes: 0 success, 1 unexpected error, 2 bad input (message says what to fix),
3 an exported graph failed its parity gate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from edgerf.errors import EdgerfError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Recurrent classifiers that run forever on edge devices, with no state reset.")


def _version(value: bool) -> None:
    if value:
        from edgerf import __version__
        typer.echo(f"edgerf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Recurrent classifiers that run forever on edge devices, with no state reset."""


def _fail(e: EdgerfError) -> None:
    typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
    raise typer.Exit(e.exit_code)


def _choices(names) -> str:
    return ", ".join(names)


@app.command()
def train(
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint file to write (atomically)."),
    task: str = typer.Option("sfmnist", help="Task: sfmnist."),
    model: str = typer.Option("gru", help="Model family: rnn, gru, ssm, lif."),
    loss: str = typer.Option("reset-free", help="reset-free (the paper), periodic-reset or ce (baselines)."),
    hidden: int = typer.Option(128, help="Width of the recurrent layers."),
    layers: int = typer.Option(1, help="Stacked recurrent layers."),
    epochs: int = typer.Option(6, help="Passes over the training split."),
    batch: int = typer.Option(64, help="Parallel unreset training streams."),
    bptt: int = typer.Option(128, help="Truncated-BPTT chunk length in steps (state carries over)."),
    lr: float = typer.Option(3e-3, help="Peak Adam learning rate (cosine decay)."),
    seed: int = typer.Option(0, help="Seed for weights, stream order and noise."),
    train_samples: Optional[int] = typer.Option(None, help="Use only the first N training samples."),
    val_samples: int = typer.Option(500, help="Validation samples checked after each epoch."),
    test_steps: int = typer.Option(100_000, help="Length of the unreset test stream for the final numbers."),
    threads: int = typer.Option(1, help="torch intra-op threads."),
    data: Optional[Path] = typer.Option(None, help="Dataset folder (else $EDGERF_DATA, Debian's, ../shared/data)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a recurrent classifier on an unreset stream and write a checkpoint."""
    from edgerf import checkpoint
    from edgerf.cells import FAMILIES
    from edgerf.loss import TRAINING_MODES
    from edgerf.tasks import TASKS
    from edgerf.train import TrainConfig, train as run

    for name, value, known in (("task", task, TASKS), ("model", model, FAMILIES), ("loss", loss, TRAINING_MODES)):
        if value not in known:
            raise typer.BadParameter(f"{value!r} is not one of {_choices(known)}", param_hint=f"--{name}")
    if output.exists() and not force:
        _fail(EdgerfError(f"{output} exists; pass --force to overwrite it."))
    cfg = TrainConfig(task=task, model=model, loss=loss, hidden=hidden, layers=layers, epochs=epochs,
                      batch=batch, bptt=bptt, lr=lr, seed=seed, train_samples=train_samples,
                      val_samples=val_samples, test_steps=test_steps, threads=threads,
                      data=str(data) if data else None)
    try:
        ckpt = run(cfg, progress=not quiet)
        checkpoint.save(output, ckpt)
    except EdgerfError as e:
        _fail(e)
    except ValueError as e:
        _fail(EdgerfError(str(e)))
    typer.echo(json.dumps(ckpt.results["test"]))
    typer.secho(f"wrote {output}", err=True, fg=typer.colors.GREEN)


def main() -> None:  # pragma: no cover - console entry for `python -m edgerf.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
