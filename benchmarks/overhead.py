"""Overhead: the same federated work in one process and as a fedfrontier run on Ray, side by side.

The configuration of the issue: 20 IID clients on ``mnist5k`` (its seeded 4,000 / 1,000
split), the seed's CNN (``mnist_cnn``), 10 rounds, every client every round, 1 local
epoch (round(200 / 32) = 6 steps per client), batch 32, SGD lr 0.05; the test set is
evaluated once, after the last round, on both sides.

Single process, no Ray: each round, each client starts from the global weights, trains
its steps, and the deltas are averaged:

- ``none``: a plain PyTorch loop (shuffled batches of 32, ``loss.backward()``, SGD);
- ``ghost`` / ``hooks``: a plain Opacus loop -- ``PrivacyEngine.make_private`` once, then
  Poisson batches at rate 32 / 200 from a seeded generator, sigma = 1, C = 1, the noisy
  sum divided by 32 as fedfrontier does (the two sides' models come out equal);
- ``bookkeeping``: fedfrontier's own engine (``LocalTrainer``) called in a loop.

fedfrontier: a Federation on one local Ray with 2 CPUs, client actors of 1 CPU and 1
thread each, with the same seed, work and ``client.grad_sample_mode`` (``--cases``:
layout, single-process engine, fedfrontier engine; ``ghost`` against ``bookkeeping``
compares fedfrontier as shipped with the plain Opacus loop in Opacus's fastest CPU mode).
Two layouts:

- ``2x2``: the single process on 2 torch threads against 2 client actors (the default
  here) -- the whole machine on both sides, as the issue asks;
- ``1x1``: 1 thread against 1 client actor -- no parallelism on either side, so the
  ratio is the orchestration overhead alone (and a busy neighbour does not penalise
  the multi-threaded side more, as it does in ``2x2``).

Both sides are alive together and step round by round in alternation (single then
fedfrontier, then the other way round), so that a neighbour's burst of load falls on
both alike; while one side computes the other waits. Throughput ratio = single-process
seconds / fedfrontier seconds over the 10 rounds (same work; > 1: fedfrontier faster),
with the median of the per-round ratios beside it. Start-up (actor creation, data and
model loading in the actors) is timed apart and reported as a second ratio.

    python benchmarks/overhead.py [--cases 2x2:none:none,1x1:ghost:ghost] [--repeats 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import common
import torch

ROUNDS, CLIENTS, BATCH, LR, SIGMA, CLIP = 10, 20, 32, 0.05, 1.0, 1.0
OVERRIDES = ["data.dataset=mnist5k", "data.partition=iid", f"data.num_clients={CLIENTS}", "model.name=mnist_cnn",
             f"server.clients_per_round={CLIENTS}", "server.sampling=fixed", f"server.rounds={ROUNDS}",
             f"run.eval_every={ROUNDS}", "client.local_epochs=1", f"client.batch_size={BATCH}", f"client.lr={LR}",
             f"client.noise_multiplier={SIGMA}", f"client.max_grad_norm={CLIP}", "run.seed=0",
             "audit.membership=false", "audit.canaries=0",  # the single process runs no audit either
             "client.accountant=rdp", "server.accountant=rdp"]  # as the recorded figures; Opacus's loop uses RDP too
CASES = ("2x2:none:none", "2x2:bookkeeping:bookkeeping", "2x2:ghost:ghost", "2x2:ghost:bookkeeping",
         "1x1:none:none", "1x1:bookkeeping:bookkeeping")  # THREADSxACTORS:single engine:fedfrontier engine
LABELS = {"none": "non-private, plain PyTorch loop", "bookkeeping": "DP-SGD, bookkeeping engine in a loop",
          "ghost": "DP-SGD, plain Opacus loop (ghost)", "hooks": "DP-SGD, plain Opacus loop (hooks)"}


def config(engine: str, actors: int = 0):
    from privacy.config.experiment import load_config

    dp = ["client.dp=false"] if engine == "none" else ["client.dp=true", f"client.grad_sample_mode={engine}"]
    return load_config(overrides=[*OVERRIDES, *dp, f"client.num_actors={actors}"])


class SingleProcess:
    """The whole federated computation in this process, one round per call."""

    def __init__(self, engine: str, threads: int):
        from actors.client import initial_weights, local_spec
        from actors.model_inputs import load_from_config
        from actors.local_training import LocalTrainer
        from actors.models import build_model
        from orchestrator.resolve import resolve_config

        torch.set_num_threads(threads)
        plan = resolve_config(config(engine), capacity=(2.0, 0.0))
        self.cfg, self.spec = plan.config, local_spec(plan.config)
        data = load_from_config(self.cfg.data)
        self.shards = [data.tensors("train", idx) for idx in plan.partition.indices]
        self.x_test, self.y_test = data.tensors("test")
        self.weights = torch.tensor(initial_weights(self.cfg, 1, 10, 28))
        self.model = build_model("mnist_cnn", in_channels=1, num_classes=10, image_size=28, seed=self.cfg.run.seed)
        self.params = list(self.model.parameters())
        self.opacus = _opacus_objects(self.model, engine, self.shards[0]) if engine in ("hooks", "ghost") else None
        self.trainer = LocalTrainer(self.model, self.spec) if self.opacus is None else None

    def round(self, r: int) -> None:
        from privacy.seeding import CLIENT, torch_generator

        total = torch.zeros_like(self.weights)
        for k, (x, y) in enumerate(self.shards):
            gen = torch_generator(self.cfg.run.seed, CLIENT, k, r)
            if self.trainer is not None:  # plain PyTorch loop (none) or fedfrontier's engine (bookkeeping)
                total += self.trainer.train(self.weights, x, y, gen).delta
            else:
                total += self._opacus_client(x, y, gen)
        self.weights = self.weights + total / CLIENTS

    def _opacus_client(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        from torch.nn.utils import parameters_to_vector

        from actors.local_training import load_flat_

        module, optimizer, criterion = self.opacus
        load_flat_(self.params, self.weights)
        optimizer.state.clear()
        optimizer.generator = gen
        n = len(y)
        for _ in range(self.spec.steps(n)):
            idx = torch.nonzero(torch.rand(n, generator=gen) < self.spec.sample_rate(n)).squeeze(1)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(module(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        return parameters_to_vector(self.params).detach() - self.weights

    @torch.no_grad()
    def accuracy(self) -> float:
        from actors.local_training import load_flat_

        load_flat_(self.params, self.weights)
        return float((self.model(self.x_test).argmax(1) == self.y_test).float().mean())


def _opacus_objects(model, mode: str, shard):
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(*shard), batch_size=BATCH)  # sets the expected batch size (32), no more
    out = PrivacyEngine(accountant="rdp").make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=LR), criterion=torch.nn.CrossEntropyLoss(),
        data_loader=loader, noise_multiplier=SIGMA, max_grad_norm=CLIP, poisson_sampling=False,
        grad_sample_mode=mode)
    optimizer = out[1]
    optimizer.expected_batch_size = BATCH  # make_private derives int(200 / ceil(200 / 32)) = 28 from the loader
    return out[0], optimizer, (out[2] if mode == "ghost" else torch.nn.CrossEntropyLoss())


def compare(single_engine: str, fed_engine: str, threads: int, actors: int, rep: int) -> dict:
    import ray

    from orchestrator.federation import Federation
    from orchestrator.resolve import resolve_config

    t0 = time.perf_counter()
    plan = resolve_config(config(fed_engine, actors))
    fed = Federation(plan).start()
    ray.get([c.client_ids.remote() for c in fed.clients] + [fed.server.get_weights.remote()])  # actors are up
    startup = time.perf_counter() - t0
    single = SingleProcess(single_engine, threads)
    t_single, t_fed, rows = [], [], []
    try:
        for r in range(ROUNDS):
            for side in (("single", "fed") if (r + rep) % 2 == 0 else ("fed", "single")):
                t = time.perf_counter()
                if side == "single":
                    single.round(r)
                    accuracy = single.accuracy() if r == ROUNDS - 1 else None  # evaluated once, like the server
                else:
                    rows.append(fed.step(r))
                (t_single if side == "single" else t_fed).append(time.perf_counter() - t)
    finally:
        fed.close()
    return {"pair": f"{single_engine}:{fed_engine}", "layout": f"{threads}x{actors}", "repeat": rep,
            "single_round_s": t_single, "fed_round_s": t_fed, "startup_s": startup, "single_accuracy": accuracy,
            "fed_accuracy": rows[-1]["test_accuracy"], "actors": plan.config.client.num_actors,
            "failed": sum(r["clients_failed"] for r in rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES),
                   help="comma-separated THREADSxACTORS:SINGLE:FEDFRONTIER, engines among none, bookkeeping, "
                        "ghost, hooks")
    p.add_argument("--repeats", type=int, default=1, help="passes over the cases")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    import ray

    from orchestrator.cluster import ensure_ray

    t0 = time.perf_counter()
    ensure_ray(num_cpus=args.cpus)
    ray_init = time.perf_counter() - t0
    cases = args.cases.split(",")
    done = common.Partial("overhead")  # a killed run resumes after its last finished case
    try:
        for rep in range(args.repeats):
            for case in cases:
                if f"{rep}:{case}" in done:
                    continue
                layout, single_engine, fed_engine = case.split(":")
                threads, actors = (int(v) for v in layout.split("x"))
                res = compare(single_engine, fed_engine, threads, actors, rep)
                done.add(f"{rep}:{case}", res)
                print(f"{case:>28}: single {sum(res['single_round_s']):.1f} s, fedfrontier "
                      f"{sum(res['fed_round_s']):.1f} s (+ {res['startup_s']:.1f} s start-up); accuracy "
                      f"{res['single_accuracy']:.3f} / {res['fed_accuracy']:.3f}", flush=True)
    finally:
        ray.shutdown()
    runs = list(done.items.values())
    rows = []
    for case in cases:
        layout, a, b = case.split(":")
        mine = [r for r in runs if r["layout"] == layout and r["pair"] == f"{a}:{b}"]
        single = common.median([sum(r["single_round_s"]) for r in mine])
        fed = common.median([sum(r["fed_round_s"]) for r in mine])
        startup = common.median([r["startup_s"] for r in mine]) + ray_init
        per_round = common.median([s / f for r in mine for s, f in zip(r["single_round_s"], r["fed_round_s"])])
        threads, actors = layout.split("x")
        rows.append([LABELS[a], threads, b, actors, round(single, 1), round(fed, 1), round(single / fed, 2),
                     round(per_round, 2), round(startup, 1), round(single / (fed + startup), 2)])
    table = common.markdown_table(["single process (10 rounds x 20 clients)", "threads", "fedfrontier engine",
                                   "actors", "single process s", "fedfrontier s", "throughput ratio",
                                   "median per-round ratio", "fedfrontier start-up s", "ratio with start-up"], rows)
    print(table)
    path = common.write_results("overhead", {"machine": common.machine(), "args": vars(args), "ray_init_s": ray_init,
                                             "runs": runs}, table)
    done.finish()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
