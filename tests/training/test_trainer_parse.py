"""Parsing kohya's console output into progress: real-looking lines, tqdm redraws, ETA, loss history."""

from __future__ import annotations

import pytest

from training.trainer.parse import Progress, append_loss, parse_line, split_output

HEADER = """running training / 学習開始
  num train images * repeats / 学習画像の数×繰り返し回数: 200
  num reg images / 正則化画像の数: 0
  num batches per epoch / 1epochのバッチ数: 200
  num epochs / epoch数: 10
  batch size per device / バッチサイズ: 1
  gradient accumulation steps / 勾配を合計するステップ数 = 1
  total optimization steps / 学習ステップ数: 2000
"""


def feed(text: str) -> Progress:
    progress = Progress()
    lines, rest = split_output(text)
    for line in [*lines, rest]:
        progress.apply(parse_line(line))
    return progress


def test_header_gives_totals():
    progress = feed(HEADER)
    assert progress.total_steps == 2000
    assert progress.total_epochs == 10
    assert progress.step == 0


@pytest.mark.parametrize(
    ("line", "step", "total", "rate", "loss"),
    [
        ("steps:  40%|████      | 4/10 [00:01<00:01,  3.20it/s, avr_loss=0.0912]", 4, 10, 3.2, 0.0912),
        ("steps:  25%|██▌       | 500/2000 [08:20<25:00,  1.00s/it, avr_loss=0.113]", 500, 2000, 1.0, 0.113),
        ("steps:  50%|█████     | 1000/2000 [40:00<40:00,  2.50s/it, loss=1.2e-1]", 1000, 2000, 0.4, 0.12),
        ("steps:   0%|          | 0/2000 [00:00<?, ?it/s]", 0, 2000, None, None),
    ],
)
def test_tqdm_lines(line, step, total, rate, loss):
    update = parse_line(line)
    assert update.step == step
    assert update.total_steps == total
    assert update.it_per_second == pytest.approx(rate) if rate else update.it_per_second is None
    assert update.loss == pytest.approx(loss) if loss else update.loss is None


def test_other_progress_bars_and_noise_are_not_training_steps():
    assert parse_line("caching latents: 100%|██████████| 20/20 [00:03<00:00,  6.1it/s]").is_empty()
    assert parse_line("loading model for process 0/1").is_empty()
    assert parse_line("epoch is 3/4 of the way").is_empty()


def test_carriage_return_redraws_epochs_eta_and_history():
    text = HEADER + "\nepoch 1/10\n"
    text += "".join(
        f"\rsteps:   {i // 20}%|          | {i}/2000 [00:{i:02d}<10:00,  4.00it/s, avr_loss=0.{100 - i:03d}]"
        for i in range(1, 41)
    )
    progress = feed(text)
    assert progress.epoch == 1
    assert progress.step == 40
    assert progress.loss == pytest.approx(0.060)
    assert progress.eta_seconds == pytest.approx((2000 - 40) / 4.0)
    assert [point[0] for point in progress.loss_history] == list(range(1, 41))


def test_split_output_keeps_unfinished_line():
    lines, rest = split_output("a\r\nb\rc\npartial")
    assert lines == ["a", "b", "c"]
    assert rest == "partial"


def test_loss_history_stays_bounded_and_keeps_its_span():
    history: list[list[float]] = []
    for step in range(1, 5001):
        append_loss(history, step, 1.0 / step, limit=500)
    assert len(history) <= 500
    assert history[0][0] == 1
    assert history[-1][0] == 5000
    steps = [s for s, _ in history]
    assert steps == sorted(steps)
