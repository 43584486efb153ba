"""The names the CLI offers as choices, importable without torch.

The tables themselves (``edgerf.cells.FAMILIES``, ``edgerf.loss.TRAINING_MODES``) hold
torch classes (and ``edgerf.tasks.TASKS`` the data readers, which ``edgerf stream`` need not load); the CLI must build its ``--help`` and completion on a device that has no
torch, so the row names live here and each table checks at import that its keys are
exactly these (a new row is one name here plus its row there).
"""

TASK_NAMES = ("sfmnist", "gsc")          # edgerf.tasks.TASKS
FAMILY_NAMES = ("rnn", "gru", "ssm", "ssm-sel", "lif")
TRAINING_MODE_NAMES = ("reset-free", "periodic-reset", "ce")
READOUT_NAMES = ("linear", "gated")      # edgerf.cells.READOUTS
DEVICES = ("cpu", "arm64")      # edgerf bench: this machine, or aarch64 under qemu emulation
TRAIN_DEVICES = ("auto", "cpu", "cuda")   # edgerf train: auto = cuda when torch sees one


def check_table(table: dict, names: tuple[str, ...], what: str) -> None:
    if tuple(table) != names:
        raise RuntimeError(f"{what} rows {tuple(table)} differ from edgerf.choices {names}; update both")
