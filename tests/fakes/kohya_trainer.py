"""A stand-in for kohya sd-scripts' ``train_network.py``: same arguments, folders and console output.

Run as ``python tests/fakes/kohya_trainer.py --config_file config.toml``. It reads the TOML,
checks the dataset layout (``<repeats>_<trigger> <class>`` folders, a ``.txt`` caption beside each
image), prints a kohya-like header, ``epoch i/N`` lines and a tqdm bar redrawn with ``\\r``, and
writes ``<output_dir>/<output_name>.safetensors`` (a valid safetensors header and one tiny tensor).

Misbehaviour on request, by option or environment variable (options win):
``--mode crash`` / ``FAKE_TRAINER_MODE=crash``: a traceback and exit 1 halfway through;
``--mode no_output``: exit 0 without writing the file; ``--mode garbage``: write a file that is
not safetensors; ``--step-delay S`` / ``FAKE_TRAINER_STEP_DELAY``: seconds per step (slow runs for
cancel tests); ``--max-steps N`` caps the steps printed (the header still says the real total).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import struct
import sys
import time
import tomllib
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def fail(message: str) -> None:
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def check_dataset(train_data_dir: Path) -> tuple[int, int, str]:
    """(images, images × repeats, trigger word) or exit 2 saying what is wrong."""
    if not train_data_dir.is_dir():
        fail(f"train_data_dir {train_data_dir} does not exist")
    images = weighted = 0
    trigger = ""
    for subset in sorted(p for p in train_data_dir.iterdir() if p.is_dir()):
        m = re.fullmatch(r"(\d+)_(\S+)(?: (.+))?", subset.name)
        if not m:
            print(f"ignore directory without repeats / 繰り返し回数のないディレクトリを無視します: {subset.name}")
            continue
        repeats, trigger = int(m[1]), m[2]
        files = [p for p in subset.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        for image in files:
            caption = image.with_suffix(".txt")
            if not caption.is_file():
                fail(f"no caption for {image.name}")
            if not caption.read_text(encoding="utf-8").strip().startswith(trigger):
                fail(f"caption of {image.name} does not start with the trigger word {trigger}")
        print(f"found directory {subset} contains {len(files)} image files")
        images += len(files)
        weighted += len(files) * repeats
    if images == 0:
        fail("No data found. Please verify arguments (train_data_dir must be the parent of folders with images)")
    return images, weighted, trigger


def write_safetensors(path: Path, name: str, trigger: str) -> None:
    data = struct.pack("<4f", 0.1, -0.2, 0.3, -0.4)
    header = {
        "__metadata__": {"ss_output_name": name, "ss_tag_frequency": json.dumps({trigger: 1})},
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": {
            "dtype": "F32",
            "shape": [2, 2],
            "data_offsets": [0, len(data)],
        },
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    tmp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config_file", required=True)
    parser.add_argument("--mode", default=os.environ.get("FAKE_TRAINER_MODE", "ok"))
    parser.add_argument("--step-delay", type=float, default=float(os.environ.get("FAKE_TRAINER_STEP_DELAY", "0")))
    parser.add_argument("--max-steps", type=int, default=int(os.environ.get("FAKE_TRAINER_MAX_STEPS", "0")))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (print("terminated by SIGTERM", flush=True), sys.exit(143)))

    config = tomllib.loads(Path(args.config_file).read_text(encoding="utf-8"))
    for key in ("pretrained_model_name_or_path", "train_data_dir", "output_dir", "output_name", "network_module"):
        if key not in config:
            fail(f"the config has no {key}")
    if config.get("save_model_as") != "safetensors":
        fail("this fake only writes safetensors")
    _images, weighted, trigger = check_dataset(Path(config["train_data_dir"]))
    epochs = int(config.get("max_train_epochs", 1))
    batch = int(config.get("train_batch_size", 1))
    per_epoch = -(-weighted // batch)
    total = per_epoch * epochs
    shown = min(total, args.max_steps) if args.max_steps else total

    print(f"loading model for process 0/1: {config['pretrained_model_name_or_path']}", flush=True)
    print("prepare optimizer, data loader etc.", flush=True)
    print("running training / 学習開始", flush=True)
    print(f"  num train images * repeats / 学習画像の数×繰り返し回数: {weighted}", flush=True)
    print("  num reg images / 正則化画像の数: 0", flush=True)
    print(f"  num batches per epoch / 1epochのバッチ数: {per_epoch}", flush=True)
    print(f"  num epochs / epoch数: {epochs}", flush=True)
    print(f"  batch size per device / バッチサイズ: {batch}", flush=True)
    print(f"  total optimization steps / 学習ステップ数: {total}", flush=True)

    started = time.monotonic()
    loss = 0.15
    for step in range(1, shown + 1):
        if (step - 1) % per_epoch == 0:
            print(f"\nepoch {(step - 1) // per_epoch + 1}/{epochs}", flush=True)
        if args.mode == "crash" and step > shown // 2:
            print("", flush=True)
            print("Traceback (most recent call last):", flush=True)
            print('  File "train_network.py", line 1012, in train', flush=True)
            print("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
            return 1
        if args.step_delay:
            time.sleep(args.step_delay)
        loss = loss * 0.97 + 0.002 * (step % 3)
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = step / elapsed
        speed = f"{rate:.2f}it/s" if rate >= 1 else f"{1 / rate:.2f}s/it"
        bar = "█" * (step * 10 // total) + " " * (10 - step * 10 // total)
        sys.stdout.write(
            f"\rsteps: {step * 100 // total:3d}%|{bar}| {step}/{total} [00:01<00:01, {speed}, avr_loss={loss:.4f}]"
        )
        sys.stdout.flush()
    print("", flush=True)

    output_dir = Path(config["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{config['output_name']}.safetensors"
    if args.mode == "no_output":
        print("model saved.", flush=True)  # a trainer that says so and did not
        return 0
    if args.mode == "garbage":
        target.write_text("this is not a model\n")
    else:
        write_safetensors(target, config["output_name"], trigger)
    print(f"saving checkpoint: {target}", flush=True)
    print("model saved.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
