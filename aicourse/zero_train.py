"""ZeRO stage 1 under torchrun: DDP + ZeroRedundancyOptimizer(Adam), gloo, float64 (notebook 29, section 7).

One machine, two processes:

    torchrun --nproc-per-node 2 -m aicourse.zero_train --steps 5 --out final.npz

Two machines of 8 processes each (the same command on both; HOST is the first machine's address):

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m aicourse.zero_train

torchrun starts the processes and gives each RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in its
environment; ``init_process_group("gloo")`` reads them (``env://``). The data and the initial weights are drawn
from ``--seed`` on every rank (``problem``), so ``problem`` + ``train_adam_one_process`` is the one-process
reference. Rank 0 writes the final parameters [W1, b1, W2, b2] to ``--out`` (np.savez: arr_0, arr_1, ...).
"""
import argparse
import os
import warnings

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from aicourse.lessons.distributed import shards, snapshot, torch_mlp
from aicourse.lessons.mlp_training import init_mlp


def problem(seed=0, rows=256, sizes=(16, 32, 4), batch=32, steps=5):
    """(params0, X, y, schedule): an MLP's initial weights, random data and `steps` global batches of `batch` rows."""
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((rows, sizes[0])), rng.integers(0, sizes[-1], rows)
    params0 = init_mlp(list(sizes), rng)
    schedule = [rng.permutation(rows)[:batch] for _ in range(steps)]
    return params0, X, y, schedule


def train(params0, X, y, schedule, lr, rank, world_size):
    """DDP + ZeroRedundancyOptimizer(Adam) on this rank's shard of each global batch; the final parameters."""
    from torch.nn.parallel import DistributedDataParallel

    # torch <= 2.5 warns, on import and under its own "always" filter, that TorchScript functional optimizers
    # are deprecated (ZeroRedundancyOptimizer uses none): record that warning and drop it
    with warnings.catch_warnings(record=True):
        from torch.distributed.optim import ZeroRedundancyOptimizer

    model = torch_mlp(params0)
    ddp = DistributedDataParallel(model)
    opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=torch.optim.Adam, lr=lr)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for idx in schedule:
        mine = torch.as_tensor(shards(idx, world_size)[rank])
        opt.zero_grad()
        F.cross_entropy(ddp(Xt[mine]), yt[mine]).backward()
        opt.step()
    return snapshot(model)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="Adam steps")
    parser.add_argument("--batch", type=int, default=32, help="global batch, split evenly over the ranks")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the initial weights")
    parser.add_argument("--out", default="zero_train.npz",
                        help="a new file where rank 0 writes the final parameters")
    args = parser.parse_args(argv)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise SystemExit("aicourse.zero_train runs under torchrun, which sets RANK and WORLD_SIZE: "
                         "torchrun --nproc-per-node 2 -m aicourse.zero_train")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if rank == 0 and os.path.exists(args.out):       # never overwrite a file someone kept: choose another --out
        raise SystemExit(f"{args.out} exists and is not overwritten: give --out a new file")
    if args.batch % world_size:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the {world_size} processes")
    torch.set_num_threads(1)
    dist.init_process_group("gloo")      # env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE from torchrun
    try:
        final = train(*problem(args.seed, batch=args.batch, steps=args.steps), args.lr, rank, world_size)
        if rank == 0:
            np.savez(args.out, *final)
            print(f"rank 0 of {world_size} on {os.environ.get('MASTER_ADDR')}: {args.steps} steps, wrote {args.out}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
