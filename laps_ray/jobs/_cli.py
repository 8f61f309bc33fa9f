"""THE job command line: a job declares its flags once and gets parsing, overrides, logging and errors.

A job module is ``XJobConfig`` + ``run(cfg) -> XResult`` + ``summary(result) -> str`` + ``main()``;
its ``main`` is one call::

    FLAGS = (Flag("--input", "input", "video file or folder"), Flag("--strict", "strict", "...", switch=True))

    def main(argv=None):
        run_job("segment_folder", __doc__, FLAGS, SegmentJobConfig, run, summary, argv)

:func:`run_job` builds the parser (the job's flags + ``--config FILE.yaml``, ``--log-level``,
``--address`` and trailing ``key.sub=value`` overrides), maps each flag to its config key (flags
first, then the overrides, so an override wins), loads and validates the typed config, runs the job,
prints where the outputs went — or one line ``error: <reason>`` and a non-zero exit (2 for a config
error, 1 otherwise). Jobs write their resolved ``config.yaml`` and ``run.json`` through
:meth:`laps_ray.jobs._runtime.RunManifest.create`.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from laps_ray.config import ConfigError, load_config
from laps_ray.jobs import _runtime as rt

log = logging.getLogger("laps_ray")

C = TypeVar("C")


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets one config key.

    Attributes:
        name: the flag (``--num-actors``).
        key: the dotted config key it sets (``resources.num_actors``).
        help: one line for ``--help``.
        type: ``str``, ``int`` or ``float`` (ignored for switches).
        switch: a flag without a value; when given it sets the key to ``const``.
        const: the value a switch sets (true by default; ``--local`` sets ``backend=local``).
    """

    name: str
    key: str
    help: str
    type: Callable[[str], Any] = str
    switch: bool = False
    const: Any = True


# Flags several jobs share, declared once (a job's FLAGS tuple lists them next to its own).
INPUT = Flag("--input", "input", "video file or folder")
OUTPUT = Flag("--output", "output", "output folder")
CHECKPOINT = Flag(
    "--checkpoint", "tokenizer.checkpoint", "tokenizer checkpoint dir (default: the shipped one)"
)
REPORT = Flag("--report", "report", "calibration report (JSON) to read the threshold from")
REPORT_KEY = Flag(
    "--report-key", "report_key", "dotted key of the threshold, e.g. quantized.smoothed.best_f1.thr"
)
NUM_ACTORS = Flag("--num-actors", "resources.num_actors", "actors (default: fill the cluster)", type=int)
STRICT = Flag("--strict", "strict", "exit non-zero if any video failed", switch=True)
OVERWRITE = Flag("--overwrite", "overwrite", "redo complete outputs too", switch=True)
CLUSTERS = Flag("--clusters", "clusters", "a cluster run: assign every segment to its fitted clusters")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml``, ``--log-level``, ``--address`` and trailing ``key.sub=value`` overrides."""
    parser.add_argument("--config", type=Path, default=None, help="YAML config file (see configs/)")
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="key.sub=value", help="config overrides, applied last"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray address: omit to join the cluster this job was submitted to or start a local one; "
        "'local' forces a new local instance",
    )


def build_parser(name: str, doc: str | None, flags: Sequence[Flag]) -> argparse.ArgumentParser:
    """The parser of job ``name``: its flags, then the common arguments."""
    parser = argparse.ArgumentParser(prog=f"laps {name}", description=(doc or "").split("\n\n")[0])
    for f in flags:
        if f.switch:
            parser.add_argument(f.name, action="store_true", help=f.help)
        else:
            parser.add_argument(f.name, type=f.type, default=None, help=f.help)
    add_common_args(parser)
    return parser


def parse_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a job's command line, set up logging and remember ``--address`` for ``init_ray``.

    Jobs start Ray only after their inputs are validated (``init_ray`` inside ``run``), so a bad
    path or key is reported in a second, before Ray's start-up costs seconds.
    """
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log_level", "INFO"))
    rt.use_address(getattr(args, "address", None))
    return args


def flag_overrides(args: argparse.Namespace, flags: Sequence[Flag]) -> list[str]:
    """``key=value`` overrides from the flags that were given (switches only when set)."""
    out = []
    for f in flags:
        value = getattr(args, f.name.lstrip("-").replace("-", "_"))
        if value is None or (f.switch and not value):
            continue
        out.append(f"{f.key}={yaml_scalar(f.const if f.switch else value)}")
    return out


def yaml_scalar(v: Any) -> str:
    """A value as the right-hand side of a ``key=value`` override."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | Path):
        # Quote so that paths with spaces, ':' or '=' stay one string value.
        text = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    return str(v)


def setup_logging(level: str = "INFO") -> None:
    """Log lines for the terminal and ``ray job logs``; quieten chatty libraries."""
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in ("ray", "urllib3", "matplotlib", "h5py", "numba", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)


def job_main(body: Callable[[], Any], describe: Callable[[Any], str]) -> None:
    """Run a job body; print its outputs, or a one-line reason and exit non-zero."""
    try:
        result = body()
    except (ConfigError, rt.JobError, FileNotFoundError, ValueError) as exc:
        log.debug("job failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        rt.shutdown_ray()
    print(describe(result))
    code = getattr(result, "exit_code", 0)
    if code:
        sys.exit(code)


def run_job(
    name: str,
    doc: str | None,
    flags: Sequence[Flag],
    config_cls: type[C],
    run: Callable[[C], Any],
    describe: Callable[[Any], str],
    argv: Sequence[str] | None = None,
    load: Callable[[Path | None, list[str]], C] | None = None,
    record_command: bool = False,
) -> None:
    """The whole ``main()`` of a job (module docstring).

    Args:
        name: the job's name (``laps <name>``).
        doc: the job module's docstring (its first paragraph is the ``--help`` description).
        flags: the job's flags.
        config_cls: the job's config dataclass.
        run: the job body, ``run(cfg) -> result``.
        describe: ``result -> str``, printed on success.
        argv: the arguments (None = ``sys.argv[1:]``).
        load: ``(config file, overrides) -> cfg`` when the job loads its config its own way
            (default :func:`laps_ray.config.load_config` of ``config_cls``).
        record_command: call ``run(cfg, command=...)`` with the command line (training runs write
            it into every checkpoint's ``meta.json`` so a checkpoint says how to reproduce it).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_cli(build_parser(name, doc, flags), argv)
    overrides = flag_overrides(args, flags) + list(args.overrides)
    command = shlex.join(["python", "-m", f"laps_ray.jobs.{name}", *argv])

    def body() -> Any:
        cfg = load(args.config, overrides) if load else load_config(config_cls, args.config, overrides)
        return run(cfg, command=command) if record_command else run(cfg)

    job_main(body, describe)
