"""A small TopK-SAE training loop on activation shards; run under torchrun by test_distributed.

Usage: python tests/ddp_train_worker.py SHARD_DIR OUT_JSON GLOBAL_BATCH EPOCHS
Rank 0 writes {"fvu", "steps", "world_size", "max_param_diff", "batches_per_rank"} to OUT_JSON.
"""

import json
import sys

import torch

from vsae.data.shards import load_all, open_batches
from vsae.training.distributed import (
    all_reduce_mean,
    average_gradients,
    broadcast_parameters,
    check_in_step,
    exit_distributed,
    is_main_process,
    setup_distributed,
)


class TinyTopK(torch.nn.Module):
    def __init__(self, d: int, n: int, k: int):
        super().__init__()
        self.k = k
        w = torch.randn(n, d)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec_ND = torch.nn.Parameter(w)
        self.W_enc_DN = torch.nn.Parameter(w.t().clone())
        self.b_enc_N = torch.nn.Parameter(torch.zeros(n))
        self.b_dec_D = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x_BD):
        pre_BN = (x_BD - self.b_dec_D) @ self.W_enc_DN + self.b_enc_N
        top = pre_BN.topk(self.k, dim=1)
        codes_BN = torch.zeros_like(pre_BN).scatter(1, top.indices, top.values.relu())
        return codes_BN @ self.W_dec_ND + self.b_dec_D


def main():
    shard_dir, out_json, global_batch, epochs = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    info = setup_distributed()
    torch.manual_seed(0)
    data = open_batches(
        shard_dir,
        global_batch // info.world_size,
        shuffle=True,
        seed=1,
        shuffle_buffer=256,
        epoch_vectors=load_all(shard_dir).shape[0],
    )
    d = data.d
    torch.manual_seed(1234 + info.rank)  # different init per rank: the broadcast must fix it
    model = TinyTopK(d, 64, 4)
    broadcast_parameters(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = 0
    for epoch in range(epochs):
        data.set_epoch(epoch)
        for x_BD in data:
            loss = (model(x_BD) - x_BD).pow(2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            average_gradients(model)
            opt.step()
            with torch.no_grad():
                model.W_dec_ND /= model.W_dec_ND.norm(dim=1, keepdim=True)
            steps += 1
    check_in_step(steps)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    diff = all_reduce_mean((flat - all_reduce_mean(flat).float()).abs().max())
    if is_main_process():
        x = torch.from_numpy(load_all(shard_dir).astype("float32"))
        with torch.no_grad():
            err = (model(x) - x).pow(2).sum()
            fvu = float(err / (x - x.mean(0)).pow(2).sum())
        with open(out_json, "w") as f:
            json.dump(
                {
                    "fvu": fvu,
                    "steps": steps,
                    "world_size": info.world_size,
                    "backend": info.backend,
                    "max_param_diff": float(diff),
                    "batches_per_rank": len(data),
                },
                f,
            )
    exit_distributed(0)


if __name__ == "__main__":
    main()
