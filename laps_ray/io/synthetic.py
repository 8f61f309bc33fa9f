"""Synthetic videos with known ground truth, for tests, benchmarks and the demo (nothing is downloaded).

* :func:`textured_image`: natural-looking texture with corners everywhere, so optical flow can track.
* :func:`translate_rotate_frames` + :func:`true_positions`: a texture moved by known affines, giving the
  exact position of any point in every frame (tracker accuracy tests).
* :func:`make_action_video`: static scene whose objects move only during scheduled "bursts" of four
  visibly different motion kinds, returning LAPS-format ground-truth segments.
* :func:`make_bad_inputs`, :func:`make_vfr_video`: inputs that exercise the decoder's error paths.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np

from laps_ray.io.video import write_video

BURST_KINDS = ("slide", "circle", "shake", "lift")


def textured_image(height: int, width: int, seed: int) -> np.ndarray:
    """Random texture (H, W, 3) uint8: multi-octave smoothed colour noise plus blobs, lines and edges."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for octave in range(1, 6):  # coarse-to-fine noise: large shading down to 2-4 px detail
        cells = 2**octave
        small = rng.random((max(2, height * cells // 64), max(2, width * cells // 64), 3), np.float32)
        img += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) / octave
    img = (img - img.min()) / (np.ptp(img) + 1e-6) * 160 + 40
    area = height * width
    for _ in range(max(4, area // 1500)):  # filled blobs: strong corners at many scales
        color = tuple(float(c) for c in rng.integers(0, 256, 3))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(2, max(3, width // 12))), int(rng.integers(2, max(3, height // 12))))
        cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
    for _ in range(max(3, area // 4000)):  # lines and rectangle outlines: edges in every direction
        color = tuple(float(c) for c in rng.integers(0, 256, 3))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            cv2.line(img, p1, p2, color, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            cv2.rectangle(img, p1, p2, color, 1, cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def _affine(shift: np.ndarray, angle_deg: float, base_size: tuple[int, int], out_size: tuple[int, int]):
    """2x3 affine mapping base-image pixels to output pixels: rotate about the base centre by
    ``angle_deg`` (counter-clockwise on screen), put that centre at the output centre, then shift."""
    (bw, bh), (ow, oh) = base_size, out_size
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # y axis points down
    base_c = np.array([(bw - 1) / 2, (bh - 1) / 2])
    out_c = np.array([(ow - 1) / 2, (oh - 1) / 2])
    return np.hstack([rot, (out_c + shift - rot @ base_c)[:, None]])


def translate_rotate_frames(
    base_img: np.ndarray, shifts: np.ndarray, angles_deg: np.ndarray, out_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Frames of ``base_img`` moved by known affines.

    Args:
        base_img: (H0, W0, 3) uint8; make it larger than ``out_size`` so no border enters the view.
        shifts: (F, 2) pixel (dx, dy) of the base centre from the output centre.
        angles_deg: (F,) counter-clockwise rotation about the base centre.
        out_size: (width, height) of the output frames.

    Returns:
        frames (F, H, W, 3) uint8 and affines (F, 2, 3) float64 mapping base (x, y) → frame (x, y).
    """
    shifts = np.asarray(shifts, np.float64).reshape(-1, 2)
    angles = np.asarray(angles_deg, np.float64).reshape(-1)
    if len(shifts) != len(angles):
        raise ValueError(f"{len(shifts)} shifts but {len(angles)} angles")
    base_size = (base_img.shape[1], base_img.shape[0])
    affines = np.stack([_affine(s, a, base_size, out_size) for s, a in zip(shifts, angles)])
    frames = np.stack(
        [
            cv2.warpAffine(base_img, m, out_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            for m in affines
        ]
    )
    return frames, affines


def true_positions(affines: np.ndarray, points0: np.ndarray) -> np.ndarray:
    """True (x, y) in every frame, (F, N, 2) float64, of points given at (N, 2) in frame 0.

    Exact up to float precision: cv2.warpAffine samples pixel centres at integer coordinates, the
    same convention as our trackers.
    """
    pts = np.asarray(points0, np.float64).reshape(-1, 2)
    a0 = np.vstack([affines[0], [0, 0, 1]])
    base = (np.linalg.inv(a0) @ np.hstack([pts, np.ones((len(pts), 1))]).T)[:2].T  # frame 0 → base
    return np.einsum("fij,nj->fni", affines[:, :, :2], base) + affines[:, None, :, 2]


# ----------------------------------------------------------------------------------- action videos


def _burst_motion(
    kind: str, u: float, dur: float, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """(dx, dy, angle_deg, scale) of an object at progress ``u`` in [0, 1] of a burst of ``dur`` s.

    Every kind starts and ends at rest at the home pose, so back-to-back bursts join continuously,
    and the kinds differ in direction, frequency and amplitude so their motion tokens differ.
    """
    w, h = size
    env = math.sin(math.pi * u)  # 0 at both ends
    tau = u * dur
    if kind == "slide":  # one slow horizontal push out and back
        return 0.22 * w * env, 0.0, 0.0, 1.0
    if kind == "circle":  # ~1.2 revolutions per second on a circle through the home position
        th = 2 * math.pi * 1.2 * tau
        r = 0.12 * min(w, h) * min(1.0, 4 * env)
        return r * (math.cos(th) - 1), r * math.sin(th), 0.0, 1.0
    if kind == "shake":  # fast small jitter with a twist
        a = 0.03 * min(w, h) * math.sqrt(env)
        return (
            a * math.sin(2 * math.pi * 7 * tau),
            0.5 * a * math.sin(2 * math.pi * 5 * tau + 1),
            8 * env,
            1.0,
        )
    if kind == "lift":  # up and back down, growing as it comes toward the camera
        return 0.0, -0.25 * h * env, 0.0, 1.0 + 0.35 * env
    raise ValueError(f"unknown burst kind {kind!r}; expected one of {BURST_KINDS}")


def default_bursts(duration_s: float, seed: int = 0) -> list[tuple[float, float, str]]:
    """A varied schedule of (start_s, end_s, kind): rests of 1.5-3 s between 1.5-3 s bursts, at least
    one back-to-back pair of different kinds, and a rest at both ends."""
    rng = np.random.default_rng(seed)
    bursts: list[tuple[float, float, str]] = []
    t = float(rng.uniform(1.5, 2.5))
    pair_at = int(rng.integers(0, 2))  # which burst is followed without rest
    while True:
        kind = str(rng.choice([k for k in BURST_KINDS if not bursts or k != bursts[-1][2]]))
        end = t + float(rng.uniform(1.5, 3.0))
        if end > duration_s - 1.0:
            break
        bursts.append((round(t, 2), round(end, 2), kind))
        t = end if len(bursts) - 1 == pair_at else end + float(rng.uniform(1.5, 3.0))
    if len(bursts) < pair_at + 2:
        raise ValueError(f"duration_s={duration_s} is too short for a schedule with a back-to-back pair")
    return bursts


def _object_sprite(rng: np.random.Generator, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured object (size, size, 3) with a soft mask (size, size) in [0, 1]: an ellipse or a box,
    with boosted contrast and a dark outline so it stands out from the background texture."""
    tex = textured_image(size, size, seed).astype(np.float32)
    tex = np.clip((tex - tex.mean()) * 1.6 + rng.uniform(90, 170, 3), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    if rng.random() < 0.5:
        cv2.ellipse(mask, (size // 2, size // 2), (size // 2 - 2, size // 3), 0, 0, 360, 255, -1)
    else:
        cv2.rectangle(mask, (2, size // 5), (size - 3, size - size // 5), 255, -1)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(tex, contours, -1, (15, 15, 15), 2)
    mask = cv2.GaussianBlur(mask.astype(np.float32) / 255, (3, 3), 0)  # anti-aliased edge
    return tex, mask


def _paste(img: np.ndarray, tex: np.ndarray, mask: np.ndarray, m: np.ndarray) -> None:
    """Alpha-blend sprite ``tex`` (with ``mask``) warped by affine ``m`` into ``img`` in place, touching
    only the sprite's bounding box (a full-frame warp per object per frame was the generator's cost)."""
    side = tex.shape[0]
    corners = m @ np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float64).T
    x0, y0 = np.maximum(np.floor(corners.min(axis=1)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=1)).astype(int) + 2, (img.shape[1], img.shape[0]))
    if x0 >= x1 or y0 >= y1:
        return
    local = m.copy()
    local[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(tex, local, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(mask, local, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR)[..., None]
    roi = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.clip(roi * (1 - alpha) + warped * alpha + 0.5, 0, 255).astype(np.uint8)


def make_action_video(
    path: str | Path,
    duration_s: float = 20,
    fps: float = 30,
    size: tuple[int, int] = (320, 240),
    bursts: list[tuple[float, float, str]] | None = None,
    seed: int = 0,
    num_objects: int = 2,
    noise_std: float = 1.0,
    crf: int = 23,
) -> dict:
    """Write a static textured scene whose objects move only during ``bursts``; return ground truth.

    Args:
        path: output .mp4 (written atomically).
        size: (width, height).
        bursts: (start_s, end_s, kind) with kind in ``BURST_KINDS``; default ``default_bursts``.
        num_objects: 1 or 2 movable objects; burst k moves object k % num_objects.
        noise_std: per-frame sensor noise (grey levels) so "rest" is not bit-exact stillness.
        crf: H.264 quality (0 = lossless, for tests that compare pixels exactly).

    Returns:
        LAPS ground truth ``{"video", "video_duration_sec", "fps", "segments": [{"start_sec",
        "end_sec", "label"}]}`` with one segment per burst, label = kind.
    """
    w, h = size
    bursts = default_bursts(duration_s, seed) if bursts is None else sorted(bursts)
    for a, b, kind in bursts:
        _burst_motion(kind, 0.0, 1.0, size)  # validates the kind
        if not 0 <= a < b <= duration_s:
            raise ValueError(f"burst ({a}, {b}, {kind}) is outside [0, {duration_s}]")
    rng = np.random.default_rng(seed)
    background = textured_image(h, w, seed + 1)
    for _ in range(3):  # static props: they never move, so they must never produce energy
        x, y = int(rng.integers(0, w - w // 6)), int(rng.integers(0, h - h // 6))
        cv2.rectangle(
            background, (x, y), (x + w // 8, y + h // 8), tuple(int(c) for c in rng.integers(0, 256, 3)), -1
        )
    side = max(16, min(w, h) // 4)
    objects = []
    for k in range(max(1, num_objects)):
        tex, mask = _object_sprite(rng, side, seed + 10 + k)
        home = np.array([w * (0.3 + 0.4 * k), h * 0.55])  # objects sit apart, away from the borders
        objects.append((tex.astype(np.float32), mask, home))

    def pose(k: int, t: float) -> np.ndarray:
        """2x3 affine placing object k's sprite in the frame at time t."""
        dx = dy = ang = 0.0
        scale = 1.0
        for j, (a, b, kind) in enumerate(bursts):
            if a <= t < b and j % len(objects) == k:
                dx, dy, ang, scale = _burst_motion(kind, (t - a) / (b - a), b - a, size)
        m = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), ang, scale)
        m[:, 2] += objects[k][2] + (dx, dy) - (side - 1) / 2
        return m

    def compose(poses: list[np.ndarray]) -> np.ndarray:
        img = background.copy()
        for (tex, mask, _), m in zip(objects, poses):
            _paste(img, tex, mask, m)
        return img

    rest = [pose(k, -1.0) for k in range(len(objects))]
    still = compose(rest)  # most frames are rests: compose the still scene once
    noise_rng = np.random.default_rng(seed + 2)
    noise = [noise_rng.normal(0, noise_std, (h, w, 3)).round().astype(np.int16) for _ in range(8)]

    def render(i: int) -> np.ndarray:
        poses = [pose(k, i / fps) for k in range(len(objects))]
        img = still if all(np.array_equal(p, r) for p, r in zip(poses, rest)) else compose(poses)
        if noise_std <= 0:
            return img
        return np.clip(img + noise[(i * 5 + seed) % len(noise)], 0, 255).astype(np.uint8)

    n = int(round(duration_s * fps))
    write_video(path, (render(i) for i in range(n)), fps, crf=crf, preset="ultrafast")
    segments = [{"start_sec": float(a), "end_sec": float(b), "label": kind} for a, b, kind in bursts]
    return {"video": Path(path).name, "video_duration_sec": n / fps, "fps": float(fps), "segments": segments}


# ------------------------------------------------------------------------------------- bad inputs


def make_vfr_video(path: str | Path, timestamps, size: tuple[int, int] = (64, 48), seed: int = 0) -> None:
    """Variable-frame-rate video: frame k shows at ``timestamps[k]`` seconds and has mean brightness
    that identifies k (``40 + 8 * k`` mod 200, textured), so tests can tell frames apart."""
    w, h = size
    tex = textured_image(h, w, seed).astype(np.int16) // 4
    frames = [np.clip(tex + (40 + 8 * k) % 200, 0, 255).astype(np.uint8) for k in range(len(timestamps))]
    write_video(path, frames, fps=30, crf=18, timestamps=list(timestamps), preset="ultrafast")


def _small_video(path: Path, n: int, seed: int, size: tuple[int, int] = (64, 48), fps: float = 30) -> Path:
    w, h = size
    tex = textured_image(h, w, seed)
    frames = (np.roll(tex, 2 * k, axis=1) for k in range(n))
    write_video(path, frames, fps, crf=23, preset="ultrafast")
    return path


def _mp4_bytes_index_at_end(n: int, seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """An mp4 as a recorder writes it: the 'moov' index atom last, so a cut-off file loses it.
    (``write_video`` moves the index to the front, which would make a cut file partly readable.)"""
    import io

    w, h = size
    tex = textured_image(h, w, seed)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for k in range(n):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.roll(tex, 2 * k, axis=1), format="rgb24")))
        c.mux(s.encode(None))
    return buf.getvalue()


def _audio_only(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=rate)
        s.layout = "mono"
        n = 1024  # AAC frame size
        for k in range(int(seconds * rate) // n):
            tone = 0.1 * np.sin(2 * np.pi * 440 * (np.arange(n) + k * n) / rate).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, k * n
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def make_bad_inputs(folder: str | Path) -> dict[str, Path]:
    """Create one file per failure mode (plus one good file with a hard name) in ``folder``.

    Keys: ``zero_byte``, ``truncated`` (an mp4 cut to 30 %, its index atom lost), ``text_as_mp4``,
    ``one_frame``, ``audio_only`` (AAC in .mp4), ``unicode_name`` (a good 1 s video named
    "kitchen café 01.mp4").
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"zero_byte": folder / "zero_byte.mp4", "text_as_mp4": folder / "text_as.mp4"}
    out["zero_byte"].write_bytes(b"")
    out["text_as_mp4"].write_text("This is a text file, not a video.\n" * 20)
    data = _mp4_bytes_index_at_end(60, seed=3)
    out["truncated"] = folder / "truncated.mp4"
    out["truncated"].write_bytes(data[: int(len(data) * 0.3)])
    out["one_frame"] = _small_video(folder / "one_frame.mp4", 1, seed=4)
    out["audio_only"] = _audio_only(folder / "audio_only.mp4")
    out["unicode_name"] = _small_video(folder / "kitchen café 01.mp4", 30, seed=5)
    return out
