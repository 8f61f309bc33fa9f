"""Ray actor for the ``cluster`` job: holds one segment embedder, turns batches of segments into rows."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from typing import Any

from laps_ray.io.segment_codes import SegmentCodesError, SegmentRef
from laps_ray.pipeline.segment_embedding import EmbeddedBatch, SegmentEmbedder

log = logging.getLogger(__name__)


class EmbedWorker:
    """Loads the embedder once (``ready()`` says why it could not); :meth:`embed` never raises.

    Args:
        kind, num_codes, model_dir: those of
            :class:`~laps_ray.pipeline.segment_embedding.SegmentEmbedder`.
    """

    def __init__(self, kind: str, num_codes: int, model_dir: str | None) -> None:
        self.embedder: SegmentEmbedder | None = None
        self.error: str | None = None
        try:
            self.embedder = SegmentEmbedder(kind, num_codes, model_dir)
        except Exception as exc:  # noqa: BLE001 - reported by ready(): a load that failed is not retried
            log.error("cannot load the embedder: %s", traceback.format_exc())
            self.error = f"{type(exc).__name__}: {exc}"

    def ready(self) -> str | None:
        """None when the embedder is loaded, else why not (the driver stops the job)."""
        return self.error

    def embed(self, refs: Sequence[SegmentRef], index: Sequence[int]) -> EmbeddedBatch | dict[str, Any]:
        """The batch's rows, or ``{"error": reason}`` naming the file for a bad sidecar."""
        try:
            return self.embedder.embed(refs, index)
        except (SegmentCodesError, ValueError) as exc:
            return {"error": str(exc)}
