"""Ingestion benchmark (issue 6): 1,000 images through de-duplication + thumbnails, and video frame extraction.

python bench/ingest.py [--images 1000] [--size 768] [--video-seconds 20]

Generates, in a temporary folder laid out like a ComfyUI output folder, ``--images`` varied PNGs
(detailed block textures with gradients; about 8 % near-duplicates, brightened and re-encoded as
JPEG, and 4 % exact copies). Then, in one run:

- **core**: Tower's ingestion core (``training.ingest.imaging.analyse`` on two threads: content check,
  pHash, JPEG thumbnail; ``PhashIndex`` vectorised lookups; thumbnails written) against a plain
  single-threaded loop doing the same work the obvious way (``check_image``, ``imagehash.phash`` on
  the full image, ``Image.thumbnail`` LANCZOS, a Python loop over every kept hash). Both must keep
  and drop the same images;
- **full batch**: the real ``ingest_batch_run`` on the folder (scan, the core, storing each image and
  its thumbnail, the database rows, progress, report) on a temporary SQLite database, with the
  classifier replaced by a constant (no LLM in a benchmark). Target: ≤ 30 s for 1,000 images;
- **video**: ``extract_frames`` (PySceneDetect shots + one PyAV pass scoring sharpness) on a generated
  ``--video-seconds`` 640×360 24 fps clip with cuts, as a multiple of real time; the baseline row is
  a bare PyAV decode of every frame.

The core and the loop run alternately ``--repeat`` times, each keeping its fastest run (other
processes share the cores). Prints one table; exits 1 when the 30 s target is missed.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench._common import Row, exit_on_sigterm, print_table

TARGET_SECONDS = 30.0
MAX_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000
CPU: dict[str, float] = {}  # CPU seconds per wall second of the last run: how many cores were busy


def generate_images(folder: Path, count: int, size: int) -> tuple[int, int]:
    """``count`` PNG/JPEG files; returns (near-duplicates, exact copies) planted."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(6)
    folder.mkdir(parents=True, exist_ok=True)
    originals: list[np.ndarray] = []
    near = exact = 0
    height = size
    width = int(size * 2 / 3) // 8 * 8
    for i in range(count):
        roll = rng.random()
        if originals and roll < 0.08:
            base = originals[int(rng.integers(len(originals)))]
            out = io.BytesIO()
            Image.fromarray(np.clip(base.astype(int) + 5, 0, 255).astype("uint8")).save(out, "JPEG", quality=92)
            (folder / f"ComfyUI_{i:05d}_.jpg").write_bytes(out.getvalue())
            near += 1
            continue
        if originals and roll < 0.12:
            base = originals[int(rng.integers(len(originals)))]
            Image.fromarray(base).save(folder / f"ComfyUI_{i:05d}_.png", compress_level=1)
            exact += 1
            continue
        cells = int(rng.integers(6, 24))
        blocks = (rng.random((cells, cells, 3)) * 255).astype("uint8")
        image = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_CUBIC)
        ramp = np.linspace(0, int(rng.integers(20, 80)), width, dtype=np.float32)[None, :, None]
        image = np.clip(image.astype(np.float32) * 0.8 + ramp, 0, 255).astype("uint8")
        originals.append(image)
        Image.fromarray(image).save(folder / f"ComfyUI_{i:05d}_.png", compress_level=1)
    return near, exact


# --- the two implementations of the core -----------------------------------------------------------


def tower_core(files: list[Path], out: Path, distance: int) -> tuple[float, set[str]]:
    from training.ingest.dedupe import PhashIndex
    from training.ingest.imaging import analyse, parallel_map

    out.mkdir(parents=True, exist_ok=True)

    def work(path: Path):
        return path, analyse(path.read_bytes(), max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)

    start, cpu = time.perf_counter(), time.process_time()
    index = PhashIndex(distance)
    kept: set[str] = set()
    for path, result in parallel_map(work, files, workers=2, window=8):
        if index.find(phash=result.phash, sha256=result.checked.sha256):
            continue
        index.add(phash=result.phash, sha256=result.checked.sha256, ref=path.name)
        (out / f"{path.stem}.jpg").write_bytes(result.thumbnail)
        kept.add(path.name)
    wall = time.perf_counter() - start
    CPU["tower"] = (time.process_time() - cpu) / wall
    return wall, kept


def baseline_loop(files: list[Path], out: Path, distance: int) -> tuple[float, set[str]]:
    import hashlib

    import imagehash
    from PIL import Image

    from tower.core.uploads import check_image

    out.mkdir(parents=True, exist_ok=True)
    start, cpu = time.perf_counter(), time.process_time()
    seen: list[imagehash.ImageHash] = []
    shas: set[str] = set()
    kept: set[str] = set()
    for path in files:
        with path.open("rb") as handle:
            checked = check_image(handle, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
        image = Image.open(io.BytesIO(checked.data)).convert("RGB")
        # The plain way hashes the small copy too, so both keep the same images (the hash is made the same way).
        thumb = image.copy()
        thumb.thumbnail((320, 320), Image.Resampling.LANCZOS)
        h = imagehash.phash(thumb)
        sha = hashlib.sha256(checked.data).hexdigest()
        if sha in shas or any(h - other <= distance for other in seen):
            continue
        shas.add(sha)
        seen.append(h)
        thumb.save(out / f"{path.stem}.jpg", "JPEG", quality=82)
        kept.add(path.name)
    wall = time.perf_counter() - start
    CPU["loop"] = (time.process_time() - cpu) / wall
    return wall, kept


# --- the real batch ------------------------------------------------------------------------------


def full_batch(folder: Path, tmp: Path) -> tuple[float, dict]:
    os.environ.update(
        {
            "TOWER_VAR_DIR": str(tmp / "var"),
            "MEDIA_ROOT": str(tmp / "var" / "media"),
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:1/0"),  # not used: no task is enqueued
            "SECRET_KEY": "bench-ingest-" + "x" * 40,
            "DJANGO_SETTINGS_MODULE": "tower.settings",
            "TOWER_COMFYUI_OUTPUT_DIRS": str(folder),
            "TOWER_DATASET_MIN_SIDE": "256",
        }
    )
    (tmp / "var").mkdir(exist_ok=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from characters.models import Character
    from projects.services import project_create
    from training.ingest import services
    from training.llm import classify
    from training.models import DatasetImage

    classify.classify_image = lambda **kw: classify.Classification(character_id=None, confidence=0.0, method="")
    services.enqueue_run = lambda batch_id: None
    user = get_user_model().objects.create_user("bench")  # no password: never logs in
    project = project_create(owner=user, name="Bench")
    character = Character.objects.create(project=project, name="Hana", design_prompt="1girl")
    batch = services.ingest_batch_start(project=project, user=user, character=character, folder_root=str(folder))
    start = time.perf_counter()
    assert services.ingest_batch_claim(batch_id=batch.pk)
    batch = services.ingest_batch_run(batch_id=batch.pk)
    elapsed = time.perf_counter() - start
    assert DatasetImage.objects.count() == batch.report["added"]
    return elapsed, {**batch.report, "status": batch.status, "error": batch.error_message}


# --- video -----------------------------------------------------------------------------------------


def make_video(path: Path, seconds: float, fps: int = 24) -> int:
    import av
    import cv2

    rng = np.random.default_rng(7)
    frames = int(seconds * fps)
    cut_every = fps * 3
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        base = None
        for i in range(frames):
            if i % cut_every == 0:
                blocks = (rng.random((9, 16, 3)) * 255).astype("uint8")
                base = cv2.resize(blocks, (700, 360), interpolation=cv2.INTER_CUBIC)
            frame = np.ascontiguousarray(base[:, (i % cut_every) : (i % cut_every) + 640])
            if i % 7 == 0:
                frame = cv2.GaussianBlur(frame, (0, 0), 3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return (frames + cut_every - 1) // cut_every


def bare_decode(path: Path) -> float:
    import av

    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=768, help="long side of the generated images")
    parser.add_argument("--video-seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    exit_on_sigterm()

    tmp = Path(tempfile.mkdtemp(prefix="tower-bench-ingest-"))
    try:
        folder = tmp / "comfy-output"
        print(f"generating {args.images} images of {args.size} px…", flush=True)
        near, exact = generate_images(folder, args.images, args.size)
        files = sorted(p for p in folder.iterdir() if p.is_file())
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        print(f"{len(files)} files, {megabytes:.0f} MB, {near} near-duplicates and {exact} exact copies planted")

        tower_best = loop_best = float("inf")
        tower_kept: set[str] = set()
        loop_kept: set[str] = set()
        for round_no in range(args.repeat):
            seconds, tower_kept = tower_core(files, tmp / f"thumbs-tower-{round_no}", 6)
            tower_best = min(tower_best, seconds)
            seconds, loop_kept = baseline_loop(files, tmp / f"thumbs-loop-{round_no}", 6)
            loop_best = min(loop_best, seconds)
            print(f"round {round_no + 1}: core {tower_best:.1f} s, loop {loop_best:.1f} s", flush=True)
        agree = tower_kept == loop_kept

        print("full batch (database, storage)…", flush=True)
        batch_seconds, report = full_batch(folder, tmp)

        video = tmp / "clip.mp4"
        shots = make_video(video, args.video_seconds)
        from training.ingest.video import extract_frames

        start = time.perf_counter()
        extraction = extract_frames(video, per_shot=3)
        extract_seconds = time.perf_counter() - start
        decode_seconds = bare_decode(video)

        n = len(files)
        rows = [
            Row(f"core: {n} images, check+hash+thumb+dedupe", tower_best, loop_best, "s", "faster than loop"),
            Row("core: images/s", n / tower_best, n / loop_best, "img/s"),
            Row("core: cores busy (CPU s / wall s)", CPU["tower"], CPU["loop"], "cores"),
            Row(
                f"full batch: {n} images → dataset",
                batch_seconds,
                None,
                "s",
                f"≤ {TARGET_SECONDS:.0f} s",
                batch_seconds <= TARGET_SECONDS and report["status"] == "succeeded",
            ),
            Row("video: extraction × real time", extraction.duration / extract_seconds, None, "×"),
            Row("video: bare PyAV decode × real time", extraction.duration / decode_seconds, None, "×"),
        ]
        rows[0].passed = tower_best < loop_best
        print()
        print_table(rows)
        print()
        print(
            f"kept by core {len(tower_kept)}, by loop {len(loop_kept)}: {'same images' if agree else 'DIFFERENT'}; "
            f"full batch: added {report['added']}, duplicate {report['duplicate']}, too small {report['too_small']}, "
            f"unreadable {report['unreadable']} ({report['status']}{': ' + report['error'] if report['error'] else ''})"
        )
        print(
            f"video: {extraction.duration:.1f} s at 640×360, {len(extraction.shots)} shots found "
            f"({shots} made), {extraction.decoded} frames decoded, {len(extraction.frames)} kept, "
            f"{extract_seconds:.2f} s"
        )
        print(f"target: {n} images ≤ {TARGET_SECONDS:.0f} s through the full batch on {os.cpu_count()} cores")
        ok = rows[3].passed and agree
        return 0 if ok else 1
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
