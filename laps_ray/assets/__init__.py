"""Files shipped inside the package: the default motion tokenizer checkpoint.

``tokenizer_small/`` (model.safetensors + config.yaml + meta.json) is a ``small`` tokenizer trained by
this project's own jobs on generated sample videos; ``README.md`` here and
``scripts/make_default_checkpoint.sh`` give the exact commands that reproduce it.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DEFAULT_TOKENIZER = "tokenizer_small"


def default_tokenizer_path() -> Path:
    """Directory of the shipped default tokenizer checkpoint (load it with ``load_tokenizer``).

    Raises:
        FileNotFoundError: the checkpoint is not installed (the message names the missing path and how
            to make it).
    """
    path = ASSETS_DIR / DEFAULT_TOKENIZER
    if not (path / "model.safetensors").is_file() or not (path / "config.yaml").is_file():
        raise FileNotFoundError(
            f"default tokenizer checkpoint missing: {path} (needs model.safetensors and config.yaml); "
            "reinstall laps_ray, pass --checkpoint DIR, or rebuild it with scripts/make_default_checkpoint.sh"
        )
    return path
