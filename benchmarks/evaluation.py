"""The server's evaluation of a round's model: batch size and threads, side by side in one process.

The server evaluates the global model on the validation and test splits after every round, while its
client actors wait. Timed here: ``actors.evaluation.Evaluator.evaluate`` on the default data (mnist5k:
400 validation and 1,000 test records) for the default model (``tanh_cnn``) and the reference job's
(``mnist_cnn``), in batches of 1,000 (before) and of ``EVAL_BATCH`` (now), on one torch thread (the
server alone, before) and on two (the server with its two waiting client actors' cores, now:
``orchestrator.resources.server_threads``). The four settings are alternated, ``--repeats`` times each after
one warm-up; reported: the median seconds per evaluation and the ratio to the former setting.

    python benchmarks/evaluation.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import time

import common

MODELS = ("tanh_cnn", "mnist_cnn")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--name", default="evaluation", help="results file name under benchmarks/results/")
    args = p.parse_args()

    import torch

    from actors.evaluation import EVAL_BATCH, Evaluator
    from orchestrator.resolve import resolve_config
    from privacy.config.experiment import ExperimentConfig

    settings = [(1000, 1), (EVAL_BATCH, 1), (1000, 2), (EVAL_BATCH, 2)]
    runs: dict[str, dict[str, list[float]]] = {}
    for model in MODELS:
        plan = resolve_config(ExperimentConfig().replace(model={"name": model}, run={"noise_seed": 0}))
        evaluator = Evaluator(plan.config)
        weights = torch.cat([q.detach().reshape(-1) for q in evaluator.params]).clone()
        times = runs[model] = {f"{b}x{t}": [] for b, t in settings}
        for rep in range(args.repeats + 1):
            for batch, threads in settings:
                torch.set_num_threads(threads)
                evaluator.batch_size = batch
                t0 = time.perf_counter()
                evaluator.evaluate(weights)
                if rep:  # the first pass warms up
                    times[f"{batch}x{threads}"].append(time.perf_counter() - t0)
        print(model, {k: round(common.median(v), 3) for k, v in times.items()}, flush=True)

    rows = []
    for model, times in runs.items():
        base = common.median(times["1000x1"])
        for batch, threads in settings:
            s = common.median(times[f"{batch}x{threads}"])
            rows.append([model, batch, threads, s, base / s])
    table = common.markdown_table(["model", "batch", "torch threads", "s per evaluation", "**speed-up**"], rows)
    table += (f"\n\n400 validation + 1,000 test records of mnist5k; medians of {args.repeats} evaluations per setting, "
              "the settings alternated in one process; speed-up against batches of 1,000 on one thread.")
    print(table)
    common.write_results(args.name, {"machine": common.machine(), "args": vars(args), "runs": runs}, table)


if __name__ == "__main__":
    main()
