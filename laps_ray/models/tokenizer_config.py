"""Configuration of the motion tokenizer, and the named sizes ``tiny`` / ``small`` / ``paper``.

The config is an OmegaConf-compatible dataclass: it is stored as ``config.yaml`` next to the weights
and is all that is needed to rebuild the model (see :mod:`laps_ray.io.checkpoints`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from laps_ray.config import check, check_choice
from laps_ray.models.fsq_levels import FSQ_LEVELS, valid_codebook_sizes

INPUT_ORDERS = ("xy", "rc")
POINT_ORDERS = ("row_major", "col_major")
MOTION_INPUTS = ("velocity", "foreground")


@dataclasses.dataclass
class TokenizerConfig:
    """Architecture of :class:`~laps_ray.models.tokenizer.MotionTokenizer`.

    Defaults are the ``small`` CPU model. Shape letters: V views, T frames per window, L = T-1 tokens,
    N points, D = ``hidden_dim``.

    Attributes:
        name: label of the size (``tiny``, ``small``, ``paper``, ``imported``, ...); informational.
        num_views: V, camera views whose points are flattened into one token per time step.
        T: frames per window; the model sees L = T-1 velocity steps, one token each.
        num_points: N, tracked points per view (the input layer is tied to their order).
        hidden_dim: D, width of encoder, latent and decoder.
        num_layers: encoder Transformer blocks.
        num_heads: attention heads (``hidden_dim`` must be divisible by it).
        mlp_ratio: Transformer MLP width = ``mlp_ratio * hidden_dim``.
        decoder_layers: decoder blocks (the original uses ``int(num_layers / 2)``, i.e. 1).
        dropout: dropout after the position embedding, in attention, after projections and MLPs.
        codebook_size: nominal codebook size; must be in :data:`~laps_ray.models.fsq_levels.FSQ_LEVELS`.
        decoder_mlp_hidden: hidden width of the per-point decoder MLP.
        decoder_pos_scale: scale on the decoder's track and view embeddings (LAPS 0.2; AMPLIFY 1.0).
        rel_grid: displacement classes per axis (15 → ±7 px, 225 classes).
        z_noise_std: std of Gaussian noise added to z before FSQ, in training mode only (LAPS 0.01).
        input_order: channel order the *weights* expect. Inputs are always (x, y) velocities
            (:func:`laps_ray.core.windows.normalized_velocities`); ``"rc"`` swaps them to (row, col)
            = (y, x) inside the model, the order the original AMPLIFY/LAPS tokenizer was trained on.
            Imported checkpoints use ``"rc"`` so they see the layout they were trained with; models
            trained here use ``"xy"``.
        point_order: point order the *weights* expect. Inputs are always in our grid order (row-major,
            x fastest, :func:`laps_ray.core.windows.grid_points`). ``"col_major"`` reorders a square
            grid so the row index varies fastest, as the original preprocessing did; imported
            checkpoints use it. Requires ``num_points`` to be a perfect square.
        motion_input: what the model was trained to see: ``velocity`` = every point's velocity
            (AMPLIFY/LAPS; the default for checkpoints that do not say), ``foreground`` = the acting
            points' camera-compensated velocities, every other point still
            (:func:`laps_ray.core.motion.foreground_velocities`), so shake, belts and background do
            not shape the tokens. Training targets and inference follow it.
    """

    name: str = "small"
    num_views: int = 1
    T: int = 16
    num_points: int = 400
    hidden_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    decoder_layers: int = 1
    dropout: float = 0.1
    codebook_size: int = 2048
    decoder_mlp_hidden: int = 128
    decoder_pos_scale: float = 0.2
    rel_grid: int = 15
    z_noise_std: float = 0.0
    input_order: str = "xy"
    point_order: str = "row_major"
    motion_input: str = "velocity"

    def __post_init__(self) -> None:
        check(self.num_views >= 1, "num_views", f"must be >= 1, got {self.num_views}")
        check(self.T >= 2, "T", f"must be >= 2 (one velocity step needs two frames), got {self.T}")
        check(self.num_points >= 1, "num_points", f"must be >= 1, got {self.num_points}")
        check(self.hidden_dim >= 1, "hidden_dim", f"must be >= 1, got {self.hidden_dim}")
        check(self.num_layers >= 1, "num_layers", f"must be >= 1, got {self.num_layers}")
        check(self.num_heads >= 1, "num_heads", f"must be >= 1, got {self.num_heads}")
        check(
            self.hidden_dim % self.num_heads == 0,
            "num_heads",
            f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}",
        )
        check(self.mlp_ratio >= 1, "mlp_ratio", f"must be >= 1, got {self.mlp_ratio}")
        check(self.decoder_layers >= 0, "decoder_layers", f"must be >= 0, got {self.decoder_layers}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(
            self.codebook_size in FSQ_LEVELS,
            "codebook_size",
            f"got {self.codebook_size}, valid sizes are {valid_codebook_sizes()}",
        )
        check(
            self.decoder_mlp_hidden >= 1, "decoder_mlp_hidden", f"must be >= 1, got {self.decoder_mlp_hidden}"
        )
        check(
            self.decoder_pos_scale >= 0.0, "decoder_pos_scale", f"must be >= 0, got {self.decoder_pos_scale}"
        )
        check(
            self.rel_grid >= 3 and self.rel_grid % 2 == 1,
            "rel_grid",
            f"must be odd and >= 3 (a centre 'no motion' class), got {self.rel_grid}",
        )
        check(self.z_noise_std >= 0.0, "z_noise_std", f"must be >= 0, got {self.z_noise_std}")
        check_choice(self.input_order, INPUT_ORDERS, "input_order")
        check_choice(self.point_order, POINT_ORDERS, "point_order")
        check_choice(self.motion_input, MOTION_INPUTS, "motion_input")
        if self.point_order == "col_major":
            side = math.isqrt(self.num_points)
            check(
                side * side == self.num_points,
                "point_order",
                f"'col_major' needs a square grid, but num_points {self.num_points} is not a square",
            )

    @property
    def num_tokens(self) -> int:
        """L, tokens (velocity steps) per window."""
        return self.T - 1

    @property
    def num_classes(self) -> int:
        """Displacement classes per point and step (``rel_grid ** 2``)."""
        return self.rel_grid * self.rel_grid


_NAMED: dict[str, dict[str, Any]] = {
    # Unit tests: ~15k parameters, a 4x4 point grid, milliseconds per step.
    "tiny": dict(num_points=16, hidden_dim=16, num_layers=1, num_heads=2, decoder_mlp_hidden=16, dropout=0.0),
    # CPU default (see benchmarks/tokenizer.py for the measured speed).
    "small": dict(hidden_dim=128, num_layers=2, num_heads=4, decoder_mlp_hidden=128),
    # The original AMPLIFY/LAPS tokenizer: 30,232,805 parameters.
    "paper": dict(hidden_dim=768, num_layers=2, num_heads=8, decoder_mlp_hidden=256, decoder_layers=1),
}


def named_config_names() -> list[str]:
    """Names accepted by :func:`named_config`."""
    return list(_NAMED)


def named_config(name: str, **overrides: Any) -> TokenizerConfig:
    """A named tokenizer size, optionally with fields replaced (e.g. ``num_points=400``).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        laps_ray.config.ConfigError: an override is invalid.
    """
    if name not in _NAMED:
        raise ValueError(f"unknown tokenizer config {name!r}; valid names are {named_config_names()}")
    fields = {"name": name, **_NAMED[name], **overrides}
    return TokenizerConfig(**fields)


def model_for_name(name: str | None, default: TokenizerConfig) -> TokenizerConfig:
    """The base model config a job's ``model=NAME`` starts from (later ``model.*`` keys apply over it).

    Args:
        name: a named size (:func:`named_config_names`), another label, or None.
        default: the config used when ``name`` is None, relabelled for names that are not sizes
            (a checkpoint's own label, e.g. ``imported``).
    """
    if name is None:
        return default
    if name in named_config_names():
        return named_config(name)
    return dataclasses.replace(default, name=name)
