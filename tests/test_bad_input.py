"""Every bad value: one line naming the key, the value and the rule; exit code 2; nothing written."""

import subprocess
import sys

import pytest

CASES = [  # (arguments, key the message must name)
    (["--set", "client.noise_multiplier=-1"], "client.noise_multiplier"),
    (["--set", "client.noise_multiplier=nan"], "client.noise_multiplier"),
    (["--set", "server.noise_multiplier=1.0", "--set", "server.clip=0"], "server.clip"),
    (["--set", "server.clip=-1"], "server.clip"),
    (["--set", "client.delta=0.5"], "client.delta"),
    (["--set", "client.delta=0"], "client.delta"),
    (["--set", "server.delta=0.2"], "server.delta"),
    (["--set", "client.target_epsilon=0"], "client.target_epsilon"),
    (["--set", "client.target_epsilon=1e-9"], "client.target_epsilon"),
    (["--set", "data.num_clients=5000", "--set", "server.clients_per_round=10"], "data.num_clients"),
    (["--set", "server.clients_per_round=20"], "server.clients_per_round"),
    (["--set", "data.dataset=imagenet"], "data.dataset"),
    (["--set", "client.colour=1"], "client.colour"),
    (["--set", "foo.bar=1"], "foo"),
    (["--set", "data.dataset=mnist"], "data.root"),
    (["--set", "data.dataset=mnist", "--set", "data.root=/nonexistent/mnist"], "data.root"),
    (["--set", "data.partition=dirichlet", "--set", "data.alpha=0"], "data.alpha"),
    (["--set", "server.rounds=0"], "server.rounds"),
    (["--set", "client.accountant=moments"], "client.accountant"),
    (["--set", "client.batch_size=0"], "client.batch_size"),
    (["--set", "client.lr=-0.1"], "client.lr"),
    (["--set", "data.test_fraction=1.5"], "data.test_fraction"),
    (["--set", "client.num_gpus=1.5"], "client.num_gpus"),
    (["--set", "client.dp=false", "--set", "client.target_epsilon=2"], "client.target_epsilon"),
    (["--set", "client.lr"], "client.lr"),
    (["--config", "/nonexistent/config.toml"], "--config"),
    (["--set", "data.num_clients=1000", "--set", "data.min_client_size=10"], "data.partition"),
    (["--set", "data.dataset=digits", "--set", "model.name=tanh_cnn"], "model.name"),  # 8x8 images: too small
    (["--set", "data.features=scatternet", "--set", "model.name=tanh_cnn"], "model.name"),
    (["--set", "data.features=wavelets"], "data.features"),
]


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("args,key", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_value_gives_one_line_and_exit_code_2(args, key, tmp_path):
    out = tmp_path / "run"

    result = run_cli("run", *args, "--out", str(out), cwd=tmp_path)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("fedfrontier: error: "), result.stderr
    assert key in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_existing_output_directory_needs_overwrite_or_resume(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "rounds.csv").write_text("round\n1\n")

    result = run_cli("run", "--set", "data.dataset=digits", "--out", str(out), cwd=tmp_path)

    assert result.returncode == 2
    assert "--overwrite" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (out / "rounds.csv").read_text() == "round\n1\n"


def test_resume_of_a_directory_that_is_not_a_run(tmp_path):
    result = run_cli("run", "--resume", str(tmp_path), cwd=tmp_path)

    assert result.returncode == 2 and "--resume" in result.stderr


def test_config_errors_survive_pickling():
    import pickle

    from privacy.config import ConfigError

    err = pickle.loads(pickle.dumps(ConfigError("client.lr", -1, "must be > 0")))

    assert str(err) == "client.lr = -1: must be > 0" and err.key == "client.lr"


def test_relative_data_root_becomes_absolute(tmp_path, monkeypatch):
    from privacy.config import DataConfig

    monkeypatch.chdir(tmp_path)

    assert DataConfig(dataset="npz", root="data/x.npz").root == str(tmp_path / "data" / "x.npz")
