"""Throughput of the motion tokenizer sizes (tiny / small / paper).

    .venv/bin/python benchmarks/tokenizer.py [--output FILE.json] [--configs tiny small paper]
        [--device cpu|cuda] [--amp] [--threads N]

Per config: parameter count; training windows/s (forward + loss + backward + AdamW step, batch 32,
no accuracy metrics) and
inference windows/s (encode + quantize, batch 64, no grad). Windows are T=16 frames × N points of the
named config (tiny: N=16; small, paper: N=400). Writes JSON to --output or stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

from laps_ray.io.atomic import write_text_atomic
from laps_ray.models.losses import displacement_classes, tokenizer_loss
from laps_ray.models.tokenizer import MotionTokenizer
from laps_ray.models.tokenizer_config import named_config


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _inputs(cfg, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    tracks = 200 + torch.cumsum(
        torch.randn(batch, cfg.num_views, cfg.T, cfg.num_points, 2, generator=g) * 2, 2
    )
    vel = (tracks[:, :, 1:] - tracks[:, :, :-1]) / 200.0  # like normalized_velocities for a 400 px frame
    return vel.to(device), displacement_classes(tracks).to(device)


def _timed(fn, iters: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def bench(name: str, device: torch.device, iters: int, warmup: int, amp: bool) -> dict:
    """Measure one named config."""
    cfg = named_config(name)
    torch.manual_seed(0)
    model = MotionTokenizer(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    vel, targets = _inputs(cfg, 32, device)
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda")

    def train_step() -> None:
        model.train()
        with autocast:
            loss, _ = tokenizer_loss(model(vel), targets)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    infer_vel, _ = _inputs(cfg, 64, device)

    @torch.inference_mode()
    def infer_step() -> None:
        model.eval()
        with autocast:
            model.quantize(model.encode(infer_vel))

    train_s = _timed(train_step, iters, warmup, device)
    infer_s = _timed(infer_step, iters * 3, warmup, device)
    return {
        "params": model.num_parameters(),
        "num_points": cfg.num_points,
        "hidden_dim": cfg.hidden_dim,
        "train_batch": 32,
        "train_step_s": round(train_s, 5),
        "train_windows_per_s": round(32 / train_s, 1),
        "infer_batch": 64,
        "infer_step_s": round(infer_s, 6),
        "infer_windows_per_s": round(64 / infer_s, 1),
        "iters": iters,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=None, help="JSON file (default: stdout)")
    parser.add_argument("--configs", nargs="+", default=["tiny", "small", "paper"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="fp16 autocast + GradScaler (CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--paper-iters", type=int, default=3, help="iterations for the paper size")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {}
    for name in args.configs:
        iters = args.paper_iters if name == "paper" else args.iters
        results[name] = bench(name, device, iters, min(args.warmup, iters), args.amp)
        print(f"{name}: {results[name]}", file=sys.stderr)
    report = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "amp": bool(args.amp and device.type == "cuda"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "results": results,
    }
    text = json.dumps(report, indent=2)
    if args.output:
        write_text_atomic(args.output, text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
