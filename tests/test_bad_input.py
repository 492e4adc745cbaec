"""Every bad value or data file: one line naming the key, the value (the file) and the rule; exit code 2;
nothing written."""

import gzip
import subprocess
import sys

import numpy as np
import pytest

# A valid secure FedSGD run but for the one bad value each case adds (later --set wins).
RECORD_LEVEL = ["--set", "data.dataset=digits", "--set", "data.num_clients=4", "--set", "server.clients_per_round=4",
                "--set", "secagg.enabled=true", "--set", "secagg.level=record", "--set", "client.local_steps=1"]

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
    # secure aggregation: bits too few for the cohort, threshold above it, incompatible options
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.bits=3"], "secagg.bits"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.scale=1e9"], "secagg.bits"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.threshold=11"], "secagg.threshold"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.neighbours=4",
      "--set", "secagg.threshold=6"], "secagg.threshold"),
    (["--set", "secagg.enabled=true", "--set", "server.noise_multiplier=0.5", "--set", "server.adaptive_clip=true"],
     "server.adaptive_clip"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "server.clients_per_round=1"],
     "server.clients_per_round"),
    (["--set", "secagg.enabled=true"], "server.clip"),
    (["--set", "secagg.neighbours=3"], "secagg.neighbours"),
    # secure FedSGD (secagg.level = "record"): every silo, one clipped-gradient sum per round, record-level noise
    (RECORD_LEVEL + ["--set", "client.dp=false"], 'client.dp = False: must be true with secagg.level = "record"'),
    (RECORD_LEVEL + ["--set", "client.local_steps=2"],
     'client.local_steps = 2: must be 1 with secagg.level = "record"'),
    (RECORD_LEVEL + ["--set", "server.clients_per_round=3"],
     "server.clients_per_round = 3: must equal data.num_clients (4)"),
    (RECORD_LEVEL + ["--set", "server.clip=1", "--set", "server.noise_multiplier=1"],
     "server.noise_multiplier = 1.0: must be 0"),
    (RECORD_LEVEL + ["--set", "audit.canaries=4"], 'audit.canaries = 4: must be 0 with secagg.level = "record"'),
    (RECORD_LEVEL + ["--set", "server.clip=1", "--set", "server.target_epsilon=1"],
     'server.target_epsilon = 1.0: must be unset with secagg.level = "record"'),
    (RECORD_LEVEL + ["--set", "client.grad_sample_mode=hooks"],
     'client.grad_sample_mode = \'hooks\': must be "bookkeeping" with secagg.level = "record"'),
    (["--set", "secagg.enabled=true", "--set", "secagg.level=bogus"], "secagg.level"),
    (["--set", "server.in_driver=true", "--set", "server.num_cpus=1"], "server.in_driver = True: cannot reserve"),
    # the untrusted server's options: colluders, the accountant, the target against the server
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.colluders=10"], "secagg.colluders"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.colluders=-1"], "secagg.colluders"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.colluders=6"],  # t of 10 is 6
     "secagg.colluders = 6: must be below the Shamir threshold t = 6"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.colluders=1.5"], "secagg.colluders"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.accountant=moments"],
     "secagg.accountant"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.protocol=fast"], "secagg.protocol"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.server_target_epsilon=0"],
     "secagg.server_target_epsilon"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.server_target_epsilon=nan"],
     "secagg.server_target_epsilon"),
    (RECORD_LEVEL + ["--set", "secagg.server_target_epsilon=2"], "secagg.server_target_epsilon"),
    (RECORD_LEVEL + ["--set", "secagg.colluders=4"], "secagg.colluders"),
    (["--set", "secagg.enabled=true", "--set", "server.clip=1", "--set", "secagg.dropout_tolerance=0.1"],
     "secagg.dropout_tolerance"),
]


@pytest.mark.parametrize("args,key", [c for c in CASES if any("secagg" in a for a in c[0])][-10:],
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_plan_refuses_the_same_bad_values(args, key, tmp_path):
    result = run_cli("plan", *args, cwd=tmp_path)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in result.stderr


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


def _npz(n_labels: int = 100, labels=None):
    """A writer of a MedMNIST-layout .npz (100 + 20 28x28 grey images, 2 classes) with the given flaw;
    returns data.root."""
    def write(folder):
        rng = np.random.default_rng(0)
        path = folder / "breast.npz"
        np.savez(path, train_images=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
                 train_labels=(np.arange(n_labels) % 2)[:, None] if labels is None else labels,
                 test_images=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), test_labels=np.arange(20)[:, None] % 2)
        return path
    return write


def _file(data: bytes):
    def write(folder):
        (folder / "breast.npz").write_bytes(data)
        return folder / "breast.npz"
    return write


def _npz_declaring(shape):
    """A MedMNIST-layout .npz whose train_images header declares ``shape`` over a few bytes of data."""
    def write(folder):
        import io
        import zipfile

        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
        arrays = {"train_labels": np.zeros(3, np.int64), "test_images": np.zeros((1, 28, 28), np.uint8),
                  "test_labels": np.zeros(1, np.int64)}
        with zipfile.ZipFile(folder / "breast.npz", "w") as zf:
            zf.writestr("train_images.npy", header.getvalue() + bytes(64))
            for key, array in arrays.items():
                buf = io.BytesIO()
                np.save(buf, array)
                zf.writestr(f"{key}.npy", buf.getvalue())
        return folder / "breast.npz"
    return write


def _mnist(cut_images: int):
    """A writer of MNIST IDX files (12 train, 5 test) in folder/raw, the train images cut short."""
    def write(folder):
        (folder / "raw").mkdir()
        for stem, array in (("train-images-idx3-ubyte", np.zeros((12, 28, 28))), ("t10k-images-idx3-ubyte",
                            np.zeros((5, 28, 28))), ("train-labels-idx1-ubyte", np.arange(12) % 10),
                            ("t10k-labels-idx1-ubyte", np.arange(5))):
            data = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            data += array.astype(np.uint8).tobytes()
            if stem == "train-images-idx3-ubyte":
                data = data[:-cut_images]
            with gzip.open(folder / "raw" / f"{stem}.gz", "wb") as fh:
                fh.write(data)
        return folder
    return write


# The cases of issue 15.5 through the CLI (each run imports torch: seconds); every rule, and more bad files,
# are checked on the loaders directly in tests/test_data.py.
DATA_CASES = {  # case: (writer of data.root, dataset, what the message must say)
    "npz: 100 images, 90 labels": (_npz(n_labels=90), "npz", "breast.npz: 100 train_images but 90 train_labels"),
    "npz: negative labels": (_npz(labels=-(np.arange(100) % 2)), "npz", "breast.npz: train_labels include negative"),
    "not an npz": (_file(b"id,label\n1,0\n"), "npz", "breast.npz: not an .npz archive"),
    "empty npz": (_file(b""), "npz", "breast.npz: empty file"),
    "npz: one class": (_npz(labels=np.full(100, 3)), "npz", "breast.npz: every training label is 3"),
    "npz: a header declaring petabytes": (_npz_declaring((10**9, 10**6)), "npz", "more than half this machine's"),
    "npz: a header larger than its data": (_npz_declaring((3, 28, 28)), "npz", "(2352 bytes) but holds 64 bytes"),
    "truncated IDX": (_mnist(cut_images=1000), "mnist", "raw/train-images-idx3-ubyte.gz: truncated"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_file_gives_one_line_and_exit_code_2(case, tmp_path):
    write, dataset, expected = DATA_CASES[case]
    (tmp_path / "data").mkdir()
    root = write(tmp_path / "data")
    out = tmp_path / "run"

    result = run_cli("run", "--set", f"data.dataset={dataset}", "--set", f"data.root={root}", "--out", str(out),
                     cwd=tmp_path)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("fedfrontier: error: data.root = "), result.stderr
    assert expected in lines[0], lines[0]
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


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_resume_of_a_damaged_checkpoint_is_one_line(tmp_path, damage):
    import torch

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"data": {"dataset": "digits"}}')
    (run_dir / "secrets.json").write_text('{"run.noise_seed": 3}')
    ckpt = run_dir / "checkpoint.pt"
    if damage == "garbage":
        ckpt.write_bytes(b"not a checkpoint at all")
    else:
        torch.save({"weights": torch.zeros(3)} if damage == "foreign" else {"round": 1, "weights": torch.zeros(3),
                                                                            "rows": [], "config": {}}, ckpt)
        if damage == "truncated":
            ckpt.write_bytes(ckpt.read_bytes()[:40])

    result = run_cli("run", "--resume", str(run_dir), cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_errors_survive_pickling():
    import pickle

    from privacy.config.experiment import ConfigError

    err = pickle.loads(pickle.dumps(ConfigError("client.lr", -1, "must be > 0")))

    assert str(err) == "client.lr = -1: must be > 0" and err.key == "client.lr"


def test_relative_data_root_becomes_absolute(tmp_path, monkeypatch):
    from privacy.config.experiment import DataConfig

    monkeypatch.chdir(tmp_path)

    assert DataConfig(dataset="npz", root="data/x.npz").root == str(tmp_path / "data" / "x.npz")


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("args,key", [
    (["run", "--out", "afile"], "--out = 'afile': is a file"),
    (["run", "--out", "x" * 300], "longer than the file system's"),
    (["run", "--out", "ok/" + "y" * 300 + "/z"], "longer than the file system's"),
    (["run", "--config", "latin1.toml"], "not UTF-8 text"),
    (["run", "--config", "scalar.toml"], "must be a table of keys"),
    (["sweep", "--resume", "listed"], "expected a JSON object with the tables config, sweep"),
    (["sweep", "--resume", "garbled"], "not valid JSON"),
    (["sweep", "--resume", "foreign"], "does not fit this version"),
    (["run", "--resume", "run_listed"], "expected a JSON object"),
    (["run", "--resume", "run_no_secrets"], "no secrets.json there"),
    (["run", "--resume", "run_bad_secrets"], "not a secrets.json of this tool"),
])
def test_bad_paths_files_and_saved_state_give_one_line_and_exit_2(args, key, tmp_path):
    _write(tmp_path / "afile", b"")
    _write(tmp_path / "latin1.toml", "[server]\nrounds = 2  # caf\xe9\n".encode("latin-1"))
    _write(tmp_path / "scalar.toml", b"server = 3\n")
    _write(tmp_path / "listed" / "sweep.json", b"[1, 2]\n")
    _write(tmp_path / "garbled" / "sweep.json", b"{not json\n")
    _write(tmp_path / "foreign" / "sweep.json", b'{"config": {}, "sweep": {"colour": 1}}\n')
    _write(tmp_path / "run_listed" / "config.json", b"[]\n")
    _write(tmp_path / "run_listed" / "checkpoint.pt", b"")
    for name, secrets in (("run_no_secrets", None), ("run_bad_secrets", b'{"run.noise_seed": "7"}')):
        _write(tmp_path / name / "config.json", b'{"data": {"dataset": "digits"}}')
        _write(tmp_path / name / "checkpoint.pt", b"")
        if secrets:
            _write(tmp_path / name / "secrets.json", secrets)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    result = run_cli(*args, cwd=tmp_path)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def _run_dir(folder, mismatch: str):
    """A resumable run directory of 4 digits clients (config.json, secrets.json, checkpoint after round 1)
    with one ``mismatch`` between its parts."""
    import json

    import torch

    from orchestrator.resolve import resolve_config
    from orchestrator.run_secrets import NOISE_SEED, public, write_secrets
    from privacy.config.experiment import load_config, to_dict

    plan = resolve_config(load_config(overrides=["data.dataset=digits", "data.num_clients=4",
                                                 "server.clients_per_round=2", "run.noise_seed=1"]), capacity=(1.0, 0.0))
    saved = to_dict(public(plan.config))
    state = {"round": 1, "weights": torch.zeros(plan.num_params), "rows": [], "config": json.loads(json.dumps(saved)),
             "guarantees": {"record": {"accountant": {"kind": "gaussian", "method": "pld"}, "delta": 1e-5,
                                       "histories": {"0": [], "3": []}}}}
    if mismatch == "clients":  # config.json of another number of clients than the checkpoint's
        saved["data"]["num_clients"] = 5
    elif mismatch == "architecture":  # weights of another model
        state["weights"] = torch.zeros(plan.num_params + 10)
    elif mismatch == "ledger":
        state["guarantees"]["record"]["histories"]["7"] = []
    elif mismatch == "version":  # ledgers in another layout than this version's (one per guarantee)
        state["record"] = state.pop("guarantees")["record"]
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(saved))
    write_secrets(folder, {NOISE_SEED: 1})
    torch.save(state, folder / "checkpoint.pt")
    return folder


@pytest.mark.parametrize("mismatch,expected", [
    ("clients", "its config differs from config.json in ['data.num_clients']"),
    ("architecture", "weights; model digits_cnn has"),
    ("ledger", "has a ledger of client 7; the run has 4 clients"),
    ("version", "holds no ledgers this version reads"),
])
def test_resume_of_a_checkpoint_that_is_not_this_runs_is_one_line(mismatch, expected, tmp_path):
    run_dir = _run_dir(tmp_path / "run", mismatch)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}

    result = run_cli("run", "--resume", str(run_dir), cwd=tmp_path)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # nothing written
