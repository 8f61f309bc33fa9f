"""Convert an original AMPLIFY/LAPS motion-tokenizer checkpoint into a laps_ray checkpoint directory.

    python -m laps_ray.jobs.import_checkpoint IN.pt OUT_DIR [--config FILE.yaml] [key=value ...]

``IN.pt`` is what the original training code saved (a dict with ``config``, the resolved Hydra config
as a plain dict, and ``model``, the state dict, possibly with ``_orig_mod.`` prefixes). It is read with
``torch.load(weights_only=True)``; a file holding pickled Python objects is refused with instructions
to convert it. The output is our format (``model.safetensors`` + ``config.yaml`` + ``meta.json``, see
:mod:`laps_ray.io.checkpoints`), with ``input_order="rc"`` / ``point_order="col_major"`` so the weights
see the layout they were trained on. This job does not start Ray.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from laps_ray.config import ConfigError, check, load_config, to_dict

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ImportCheckpointConfig:
    """Options of the import job.

    Attributes:
        input: original checkpoint file (``.pt``).
        output: checkpoint directory to write.
        name: ``name`` stored in the imported TokenizerConfig.
        overwrite: replace an existing output directory.
    """

    input: str = ""
    output: str = ""
    name: str = "imported"
    overwrite: bool = False

    def __post_init__(self) -> None:
        check(bool(self.input), "input", "the original checkpoint path is required")
        check(bool(self.output), "output", "the output checkpoint directory is required")


@dataclasses.dataclass
class ImportResult:
    """What :func:`run` wrote."""

    output: str
    num_parameters: int
    sha256: str
    source_sha256: str
    ignored_keys: list[str]
    config: dict


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _plain_number(value: object) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run(cfg: ImportCheckpointConfig) -> ImportResult:
    """Read, map, verify and write one checkpoint.

    Raises:
        laps_ray.io.checkpoints.CheckpointError: unreadable or unsafe input, or the output exists.
        laps_ray.models.original_import.OriginalImportError: keys/shapes/config do not map.
    """
    from laps_ray.io.checkpoints import (
        CheckpointError,
        checkpoint_sha256,
        load_original_checkpoint,
        load_tokenizer,
        save_tokenizer,
    )
    from laps_ray.models.original_import import config_from_original, convert_original_state_dict
    from laps_ray.models.tokenizer import MotionTokenizer

    src, out = Path(cfg.input), Path(cfg.output)
    if out.exists() and not cfg.overwrite:
        raise CheckpointError(f"{out}: already exists (pass overwrite=true to replace it)")
    ckpt = load_original_checkpoint(src)
    tok_cfg = config_from_original(ckpt["config"], name=cfg.name)
    model = MotionTokenizer(tok_cfg)
    state, ignored = convert_original_state_dict(ckpt["model"], tok_cfg, model.state_dict())
    model.load_state_dict(state, strict=True)
    source_sha = _file_sha256(src)
    meta = {
        "epoch": _plain_number(ckpt.get("epoch")),
        "metrics": {
            k: v for k in ("train_loss", "val_loss") if (v := _plain_number(ckpt.get(k))) is not None
        },
        "source": {
            "path": str(src.resolve()),
            "sha256": source_sha,
            "format": "amplify",
            "ignored_keys": ignored,
        },
    }
    save_tokenizer(out, model, tok_cfg, meta=meta)
    load_tokenizer(out)  # the written checkpoint must load strictly
    result = ImportResult(
        output=str(out),
        num_parameters=model.num_parameters(),
        sha256=checkpoint_sha256(out),
        source_sha256=source_sha,
        ignored_keys=ignored,
        config=to_dict(tok_cfg),
    )
    log.info("imported %s -> %s (%d parameters)", src, out, result.num_parameters)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m laps_ray.jobs.import_checkpoint",
        description="Convert an original AMPLIFY/LAPS tokenizer checkpoint (.pt) into a laps_ray checkpoint.",
    )
    parser.add_argument("args", nargs="*", metavar="IN.pt OUT_DIR [key=value ...]")
    parser.add_argument("--config", default=None, help="YAML file with ImportCheckpointConfig keys")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    overrides = [a for a in ns.args if "=" in a]
    positional = [a for a in ns.args if "=" not in a]
    if len(positional) > 2:
        parser.error(f"expected at most IN.pt and OUT_DIR, got {positional}")
    overrides += [f"{key}={value}" for key, value in zip(("input", "output"), positional)]
    try:
        cfg = load_config(ImportCheckpointConfig, ns.config, overrides)
        result = run(cfg)
    except (ConfigError, ValueError, OSError) as exc:  # CheckpointError/OriginalImportError are ValueErrors
        print(f"import_checkpoint: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote tokenizer checkpoint {result.output} ({result.num_parameters:,} parameters, "
        f"weights sha256 {result.sha256[:16]}…; ignored {len(result.ignored_keys)} unused original buffers)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
