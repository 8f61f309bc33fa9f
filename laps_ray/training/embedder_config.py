"""The ``train_embedder`` config (``configs/train_embedder.yaml``). No Ray."""

from __future__ import annotations

import dataclasses

from laps_ray.config import check
from laps_ray.training.config import check_run_resources
from laps_ray.training.steps import OptimConfig


@dataclasses.dataclass
class LSTMArchConfig:
    """The LSTM's size (the vocabulary and ``max_len`` come from the data).

    Attributes:
        embed_dim: token embedding and LSTM width (= the embedding's width).
        num_layers: stacked LSTM layers. 1 by default: on planted data (4 code generators, 120
            segments, 40 epochs at lr 5e-3) one layer reached held-out loss 2.86 and ARI 1.00 with
            KMeans(4); two layers (the original's) were still at 3.74, ARI 0.36 after standardisation.
        dropout: dropout in training.
    """

    embed_dim: int = 128
    num_layers: int = 1
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check(self.embed_dim >= 4, "embed_dim", f"must be >= 4, got {self.embed_dim}")
        check(self.num_layers >= 1, "num_layers", f"must be >= 1, got {self.num_layers}")
        check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")


@dataclasses.dataclass
class TrainEmbedderConfig:
    """An LSTM embedder training run.

    Attributes:
        segments: a segment_folder output folder (segments.json + codes sidecars per video).
        output: the run's output folder.
        resume: continue from ``<output>/latest`` (``--resume``).
        model: LSTM size.
        max_len: tokens per sequence; 0 = the ``max_len_percentile`` of the training lengths rounded up
            to ``max_len_multiple`` (capped by ``max_len_cap``).
        max_len_percentile, max_len_multiple, max_len_cap: that rule.
        optim: AdamW + warm-up/cosine schedule + gradient clipping (the tokenizer's, reused).
        epochs: most epochs; early stopping may end sooner.
        batch_size: sequences per step per worker.
        val_fraction: share of VIDEOS held out (split by video, seeded): early stopping and ``best/``
            use their next-token loss, no class labels.
        patience: stop after this many epochs without a validation improvement of ``min_delta``
            (0 = never stop early).
        min_delta: smallest validation-loss decrease that counts as an improvement.
        seed: split, shuffling and initialisation.
        threads: torch threads per worker (0 = one per reserved CPU under Ray).
        backend: ``ray`` (TorchTrainer) or ``local`` (same loop in this process).
        num_workers, cpus_per_worker, use_gpu, gpus_per_worker: Ray Train resources (gloo on CPU, nccl
            on GPU).
        storage_path: Ray Train storage (empty = ``output``; shared storage on a multi-node cluster).
        keep_checkpoints: newest N epoch checkpoints kept (0 = all); ``best/`` is kept apart.
    """

    segments: str = ""
    output: str = ""
    resume: bool = False
    model: LSTMArchConfig = dataclasses.field(default_factory=LSTMArchConfig)
    max_len: int = 0
    max_len_percentile: float = 98.0
    max_len_multiple: int = 16
    max_len_cap: int = 512
    optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(lr=5e-3, weight_decay=1e-4))
    epochs: int = 40
    batch_size: int = 64
    val_fraction: float = 0.2
    patience: int = 6
    min_delta: float = 1e-3
    seed: int = 0
    threads: int = 0
    backend: str = "ray"
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    use_gpu: str = "auto"
    gpus_per_worker: float = 1.0
    storage_path: str = ""
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        check(
            self.max_len == 0 or self.max_len >= 2, "max_len", f"must be 0 (auto) or >= 2, got {self.max_len}"
        )
        check(
            0 < self.max_len_percentile <= 100,
            "max_len_percentile",
            f"must be in (0, 100], got {self.max_len_percentile}",
        )
        check(self.max_len_multiple >= 1, "max_len_multiple", f"must be >= 1, got {self.max_len_multiple}")
        check(self.max_len_cap >= 0, "max_len_cap", f"must be >= 0 (0 = none), got {self.max_len_cap}")
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(0 <= self.val_fraction < 1, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        check(self.patience >= 0, "patience", f"must be >= 0 (0 = off), got {self.patience}")
        check(self.min_delta >= 0, "min_delta", f"must be >= 0, got {self.min_delta}")
        check(self.threads >= 0, "threads", f"must be >= 0, got {self.threads}")
        check_run_resources(self)
