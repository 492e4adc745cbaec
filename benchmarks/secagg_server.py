"""The secure-aggregation server's own stages for one round of the devices federation, Ray-free.

Under the full protocol (``secagg.protocol = "full"``) the server's stages run one after the other on the round's
serial path, while every client actor waits: the key directory, routing the encrypted shares, summing the masked
inputs and unmasking (one Shamir reconstruction per client and the AES-CTR expansion of its self mask). Timed
here for 200 clients with 32 neighbours, 65,536 coordinates, 16 bits (mnist_devices_secagg.toml's round), every
client surviving. The clients' messages are made once per pass and only the server's calls are timed.

With ``--baseline DIR`` (a tree exported with ``git archive``) the same passes run with that tree's
``privacy.secagg.protocol`` in a subprocess, alternated with this checkout's, and both sums are checked against
the exact one.

    python benchmarks/secagg_server.py [--repeats 5] [--baseline DIR] [--name secagg_server]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

STAGES = ("collect_keys", "route_shares", "collect_masked", "unmask")
CLIENTS, NEIGHBOURS, DIM, BITS = 200, 32, 65_536, 16


def one_pass(seed: int) -> dict[str, float]:
    """Seconds of each server stage in one round (imports ``privacy.secagg.protocol`` from sys.path)."""
    import numpy as np

    from privacy.secagg import protocol
    from privacy.secagg.protocol import SecAggClient, SecAggConfig, SecAggServer

    cfg = SecAggConfig(dim=DIM, bits=BITS, threshold=NEIGHBOURS // 2 + 1, neighbours=NEIGHBOURS,
                       session=b"bench %d" % seed)
    ids = list(range(0, 5 * CLIENTS, 5))
    x = {k: np.random.default_rng([seed, k]).integers(0, 1 << BITS, size=DIM).astype(np.uint64) for k in ids}
    clients = {k: SecAggClient(k, cfg, entropy=b"bench %d" % seed) for k in ids}
    server, seconds = SecAggServer(cfg, graph_seed=seed), {}

    def timed(stage, call, *args):
        t0 = time.perf_counter()
        out = call(*args)
        seconds[stage] = time.perf_counter() - t0
        return out

    directory = timed("collect_keys", server.collect_keys, [c.advertise_keys() for c in clients.values()])
    forwarded = timed("route_shares", server.route_shares, [c.share_keys(directory) for c in clients.values()])
    survivors = timed("collect_masked", server.collect_masked, [clients[k].masked_input(x[k], forwarded[k]) for k in ids])
    total, _ = timed("unmask", server.unmask, [clients[k].unmasking_shares(survivors) for k in ids])
    exact = sum(x.values()) & np.uint64((1 << BITS) - 1)
    if not np.array_equal(np.asarray(total, np.uint64), exact):
        raise AssertionError("the unmasked sum is not the exact sum")
    return {"module": protocol.__file__, **seconds}


def main() -> None:
    import common

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--baseline", default="", help="a tree (git archive) to time side by side")
    p.add_argument("--name", default="secagg_server", help="results file name under benchmarks/results/")
    args = p.parse_args()

    def run(tree: str, seed: int) -> dict[str, float]:  # one pass in a fresh process importing from ``tree``
        code = (f"import importlib.util, json, sys; sys.path.insert(0, {tree!r}); "
                f"spec = importlib.util.spec_from_file_location('secagg_server', {__file__!r}); "
                "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
                f"print(json.dumps(m.one_pass({seed})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree)
        seconds = json.loads(out.stdout.strip().splitlines()[-1])
        if not seconds.pop("module").startswith(tree):
            raise RuntimeError(f"the pass for {tree} imported another tree's protocol")
        return seconds

    trees = {"now": str(common.ROOT)}
    if args.baseline:
        trees = {"before": os.path.abspath(args.baseline), **trees}
    runs: dict[str, dict[str, list[float]]] = {k: {s: [] for s in STAGES} for k in trees}
    for rep in range(args.repeats):
        for name, tree in trees.items():
            for stage, s in run(tree, rep).items():
                runs[name][stage].append(s)
        print(rep, {k: round(sum(common.median(v) for v in r.values()) * 1e3, 1) for k, r in runs.items()}, flush=True)

    header = ["server stage", *[f"{k} ms" for k in trees]] + (["**speed-up**"] if args.baseline else [])
    rows = []
    for stage in [*STAGES, "all four"]:
        ms = {k: (common.median(r[stage]) if stage in r else sum(common.median(v) for v in r.values())) * 1e3
              for k, r in runs.items()}
        rows.append([stage, *ms.values()] + ([ms["before"] / ms["now"]] if args.baseline else []))
    table = common.markdown_table(header, rows)
    table += (f"\n\n{CLIENTS} clients, {NEIGHBOURS} neighbours, {DIM:,} coordinates, {BITS} bits, all surviving; "
              f"medians of {args.repeats} passes, each in a fresh process"
              + (", the trees alternated." if args.baseline else "."))
    print(table)
    common.write_results(args.name, {"machine": common.machine(), "args": vars(args), "runs": runs}, table)


if __name__ == "__main__":
    main()
