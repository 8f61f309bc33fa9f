"""THE tokenizer inference path: the one place that fixes what a forward pass may depend on.

Every consumer of latents at inference (``segment_folder``'s actors, ``stream``, in-process runs in
tests, benchmarks and the demo) calls :func:`tokenize`, so "sharded and unsharded runs give
byte-identical outputs" holds by construction rather than by accident of the CPU:

* **Fixed batch shape.** Every forward call gets exactly ``batch_rows`` rows (the tail is zero-padded
  and dropped): CPU GEMM kernels may pick another blocking for another number of rows, which changes
  the summation order and so the last bits of a row's result.
* **One intra-op thread on CPU.** With several threads, oneDNN/MKL split small GEMMs along other axes
  depending on the thread count, and a row's result then depends on the thread count and on its
  position in the batch (measured on the ``tiny`` model with 2 threads: 7 of 7 row shifts changed the
  latents; with 1 thread none did, at any batch size). Parallelism comes from more actors, not from
  more threads per forward. The previous thread count is restored afterwards, so the tracker and the
  rest of the process keep their own settings.
* ``torch.inference_mode`` and, on CUDA only, fp16 autocast when ``amp`` is on. CUDA results are
  reproducible for the same device and batch shape; they are not bit-equal to CPU results.

Pure torch: no Ray, no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from laps_ray.models.tokenizer import MotionTokenizer

# torch.set_num_threads is process-wide: serialise the sections that change it.
_THREADS_LOCK = threading.Lock()


@contextmanager
def single_thread_cpu(device: torch.device) -> Iterator[None]:
    """Run the block with one torch intra-op thread when ``device`` is the CPU (see module docstring)."""
    if device.type != "cpu":
        yield
        return
    with _THREADS_LOCK:
        before = torch.get_num_threads()
        if before != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if before != 1:
                torch.set_num_threads(before)


def tokenize(
    model: MotionTokenizer, vel: np.ndarray, batch_rows: int, amp: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode and quantise windows of velocities, independent of thread count and batching.

    Args:
        model: the tokenizer, in eval mode, on its device.
        vel: (B, L, N, 2) normalised velocities of B windows (one view).
        batch_rows: rows of every forward call (``tokenizer.batch_size``); part of a run's output
            digest, because on some CPUs another fixed shape may round differently.
        amp: fp16 autocast (CUDA only; ignored on CPU).

    Returns:
        ``(z_pre, zq, ids)``: (B, L, D) float32, (B, L, D) float32, (B, L) int64.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(vel, dtype=np.float32)).to(device)[:, None]
    outs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    use_amp = bool(amp) and device.type == "cuda"
    with single_thread_cpu(device), torch.inference_mode():
        for s in range(0, x.shape[0], batch_rows):
            chunk = x[s : s + batch_rows]
            rows = chunk.shape[0]
            if rows < batch_rows:
                pad = torch.zeros((batch_rows - rows, *chunk.shape[1:]), dtype=chunk.dtype, device=device)
                chunk = torch.cat([chunk, pad])
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                z = model.encode(chunk)
                zq, ids = model.quantize(z)
            outs.append(
                (
                    z[:rows].float().cpu().numpy(),
                    zq[:rows].float().cpu().numpy(),
                    ids[:rows].cpu().numpy().astype(np.int64),
                )
            )
    if not outs:
        L, D = model.cfg.num_tokens, model.cfg.hidden_dim
        return np.zeros((0, L, D), np.float32), np.zeros((0, L, D), np.float32), np.zeros((0, L), np.int64)
    z_pre, zq, ids = (np.concatenate(parts) for parts in zip(*outs))
    return z_pre, zq, ids
