"""Result files are whole or absent: a full disk or a signal mid-write leaves the previous file and no
temporary; the CLI says so in one line."""

import errno
import signal

import pandas as pd
import pytest
import torch

from orchestrator import cli
from orchestrator.cluster import Terminated
from orchestrator.federation import CHECKPOINT, save_checkpoint
from orchestrator.files import OutputError, atomic_write, write_text


def disk_full_after(nbytes: int):
    """A writer that puts ``nbytes`` into the file, then fails as a full disk does."""
    def write(path):
        with open(path, "wb") as fh:
            fh.write(b"x" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")
    return write


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = write_text(tmp_path / "rounds.csv", "round\n1\n")

    with pytest.raises(OutputError, match="cannot write .*rounds.csv: No space left on device"):
        atomic_write(target, disk_full_after(60_000))

    assert target.read_text() == "round\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rounds.csv"]


def test_a_signal_mid_write_leaves_no_temporary(tmp_path):
    def interrupted(path):
        path.write_bytes(b"half")
        raise Terminated()

    with pytest.raises(Terminated):
        atomic_write(tmp_path / "checkpoint.pt", interrupted)

    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_on_a_full_disk_keeps_the_last_one(tmp_path, monkeypatch):
    state = {"round": 1, "weights": torch.zeros(3)}
    save_checkpoint(tmp_path, state, pd.DataFrame({"round": [1]}))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(torch, "save", lambda obj, path: disk_full_after(1000)(path))

    with pytest.raises(OutputError, match=CHECKPOINT):
        save_checkpoint(tmp_path, {**state, "round": 2}, pd.DataFrame({"round": [1, 2]}))

    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # resumable from round 1


def test_modes_are_kept(tmp_path):
    path = write_text(tmp_path / "secret", "1\n", mode=0o600)

    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("raised,code,line", [
    (OutputError("/r/rounds.parquet", OSError(errno.ENOSPC, "No space left on device")), 1,
     "fedfrontier: error: cannot write /r/rounds.parquet: No space left on device; the files written before are "
     "intact"),
    (Terminated(), 128 + signal.SIGTERM, "fedfrontier: terminated (SIGTERM); the last checkpoint is intact"),
])
def test_the_cli_ends_a_full_disk_or_sigterm_with_one_line(raised, code, line, monkeypatch, capsys):
    def fail(args):
        raise raised

    monkeypatch.setattr(cli, "cmd_run", fail)

    assert cli.main(["run"]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err
