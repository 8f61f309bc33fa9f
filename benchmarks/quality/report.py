"""``results.md``: one table row per setting and method, and the issue's targets checked on ``all``."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "f1@1.0s": 0.85,  # with all distractors on, and ahead of every peer's unsupervised score
    "start_error_median": 0.25,
    "end_error_median": 0.25,
    "back_to_back_recall": 0.8,
}
COLUMNS = (
    ("F1@0.5s", "f1@0.5s"),
    ("F1@1s", "f1@1.0s"),
    ("F1@2s", "f1@2.0s"),
    ("P@1s", "precision@1.0s"),
    ("R@1s", "recall@1.0s"),
    ("F1@1s, GT-chosen thr", None),
    ("start err (s)", "start_error_median"),
    ("end err (s)", "end_error_median"),
    ("b2b recall", "back_to_back_recall"),
    ("segs / GT", "segments_ratio"),
)


def _num(v: Any, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    """The markdown table of ``results["settings"]``."""
    head = "| distractors | method | " + " | ".join(c for c, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for setting, methods in results["settings"].items():
        for method, r in methods.items():
            if "error" in r:
                lines.append(f"| {setting} | {method} | failed: {r['error'].splitlines()[0]} |")
                continue
            u, o = r["unsupervised"], r.get("upper_bound") or {}
            cells = []
            for _, key in COLUMNS:
                cells.append(_num(o.get("scores", {}).get("f1@1.0s")) if key is None else _num(u.get(key)))
            lines.append(f"| {setting} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results: dict[str, Any], setting: str = "all") -> list[str]:
    """The issue's targets for the project on ``setting``: one line each, met or missed."""
    methods = results["settings"].get(setting, {})
    proj = methods.get("project", {}).get("unsupervised")
    if proj is None:
        return [f"targets: no project result on '{setting}'"]

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    f1 = proj["f1@1.0s"]
    peers = {
        m: r["unsupervised"]["f1@1.0s"] for m, r in methods.items() if m != "project" and "unsupervised" in r
    }
    if peers:
        best, best_peer = max(peers.items(), key=lambda kv: kv[1])
        vs_peers = f"best peer (unsupervised, {best}) {best_peer:.3f}: {mark(f1 > best_peer)}"
    else:
        vs_peers = "no peer was run (--methods): not compared"
    out = [
        f"- boundary F1@1s = {f1:.3f} (target >= {TARGETS['f1@1.0s']}): {mark(f1 >= TARGETS['f1@1.0s'])}; "
        + vs_peers,
    ]
    for key, name in (("start_error_median", "median start error"), ("end_error_median", "median end error")):
        v = proj[key]
        out.append(
            f"- {name} = {_num(v)} s (target <= {TARGETS[key]}): {mark(v is not None and v <= TARGETS[key])}"
        )
    b = proj["back_to_back_recall"]
    out.append(
        f"- back-to-back recall = {_num(b)} (target >= {TARGETS['back_to_back_recall']}): "
        f"{mark(b is not None and b >= TARGETS['back_to_back_recall'])}"
    )
    return out


def markdown(results: dict[str, Any]) -> str:
    """The whole ``results.md``."""
    cfg, timing = results["config"], results["timing"]
    proj = {s: m["project"] for s, m in results["settings"].items() if "project" in m}
    routes = sorted({p.get("route", "?") for p in proj.values()})
    lines = [
        "# Segment quality benchmark",
        "",
        f"{cfg['videos']} videos x {cfg['duration']:g} s per setting (real photographs, planted actions "
        f"with rests and back-to-back changes); project route: {', '.join(routes) or '—'}; "
        f"project overrides: {' '.join(cfg['project_overrides']) or 'none'}; "
        f"wall time {timing['total_s']:.0f} s.",
        "Unsupervised scores unless marked; 'GT-chosen thr' = the best single threshold per setting chosen "
        "on the ground truth (upper bound). Errors are medians over matched segments (IoU >= 0.3); b2b "
        "recall = recall at 1 s of the boundaries inside continuous motion.",
        "",
        table(results),
        "",
    ]
    notes = []
    for setting, p in proj.items():
        if p.get("unreliable_videos"):
            n = len(p["unreliable_videos"])
            notes.append(f"- {setting}: the project marked {n}/{cfg['videos']} videos unreliable")
        if p.get("resegment_reproduces_run") is False:
            notes.append(
                f"- {setting}: re-segmenting the project's cached energies did not reproduce its run"
            )
    if notes:
        lines += ["Notes:", "", *notes, ""]
    if "all" in results["settings"]:
        lines += ["Targets (project, all distractors):", "", *targets(results), ""]
    return "\n".join(lines)
