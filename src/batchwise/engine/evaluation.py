"""What a run measures besides its steps: evaluation and the gradient noise scale.

None of it changes the weights: evaluation runs in eval mode, the noise-scale probe takes gradients
without an update (its caller restores batch-norm statistics and RNG).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .step import restore, snapshot


@torch.no_grad()
def evaluate(model, x, y, normalise: Callable, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Mean loss, accuracy, the count of non-finite logits and the count of predictions per class over
    (x, y), in eval mode (dropout off, batch norm on running statistics), in batches of `batch_size`
    (the spec's `eval_batch_size`: it changes the time, not the numbers beyond float rounding); results
    stay on the device. A model whose logits are NaN has no accuracy: the caller checks the third value
    (argmax of NaN is class 0)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    bad = torch.zeros((), device=x.device, dtype=torch.long)
    predicted = torch.zeros(10, device=x.device, dtype=torch.long)
    for i in range(0, len(x), batch_size):
        out = model(normalise(x[i:i + batch_size]))
        loss_sum += F.cross_entropy(out, y[i:i + batch_size], reduction="sum")
        correct += (out.argmax(1) == y[i:i + batch_size]).sum()
        bad += (~torch.isfinite(out)).sum()
        guess = out.argmax(1)
        predicted.index_add_(0, guess, torch.ones_like(guess))  # bincount would sync with the host
    model.train()
    return loss_sum / len(x), correct.double() / len(x), bad, predicted


def correct_needed(n: int, target: float) -> int:
    """The fewest correct answers of `n` whose accuracy, correct / n as `evaluate` computes it (float64),
    is at least `target` (n + 1 where none is)."""
    c = min(max(0, math.ceil(target * n)), n + 1)
    while c > 0 and (c - 1) / n >= target:
        c -= 1
    while c <= n and c / n < target:
        c += 1
    return c


@torch.no_grad()
def reaches(model, x, y, normalise: Callable, batch_size: int, target: float) -> tuple[bool, int]:
    """Whether the accuracy over (x, y) is at least `target`, and how many images it read to know:
    `evaluate`'s verdict exactly, but the batches stop as soon as the errors so far decide it. For the
    CPU, where reading a count back is free: a check well below the target reads a fraction of the test
    set. The batches go in a fixed shuffled order, so that a test set sorted by difficulty (MNIST's is)
    does not delay the decision."""
    allowed = len(x) - correct_needed(len(x), target)  # errors that still reach the target
    starts = range(0, len(x), batch_size)
    order = torch.randperm(len(starts), generator=torch.Generator().manual_seed(0)).tolist()
    errors = read = 0
    model.eval()
    try:
        for i in (starts[j] for j in order):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            errors += int((model(normalise(xb)).argmax(1) != yb).sum())
            read += len(xb)
            if errors > allowed:
                return False, read
        return True, read
    finally:
        model.train()


def epoch_row(run, epoch_losses: torch.Tensor, steps_done: int, test: tuple, train: tuple) -> tuple[dict, bool]:
    """After an epoch of `run` (a `train.SeedRun`), from the `evaluate` results on the test set and on
    the fixed training sample: its row (running loss and accuracy of the steps done, eval-mode loss and
    accuracy, the noise scale where the spec asks) and whether all of it is finite."""
    finite = bool(torch.isfinite(epoch_losses).all()) and all(
        r[2].item() == 0 and math.isfinite(r[0].item()) for r in (test, train))
    measured = lambda v: v.item() if finite else math.nan  # noqa: E731 - NaN logits have no accuracy
    row = {"epoch": run.epoch, "running_loss": float(epoch_losses.mean()),
           "running_acc": run.stepper.correct.item() / sum(run.sizes[:steps_done]),
           "train_loss": measured(train[0]), "train_acc": measured(train[1]),
           "test_loss": measured(test[0]), "test_acc": measured(test[1]), "epoch_time_s": None, "elapsed_s": None}
    if run.p["noise_scale_batches"]:  # the column exists in every row of such a run
        row["noise_scale"] = noise_scale_now(run) if finite else math.nan
    return row, finite


def noise_scale_now(run) -> float:
    """B_simple at `run`'s current weights; batch-norm statistics and RNG are put back afterwards."""
    saved = snapshot(run.model, run.opt, run.device)
    value = gradient_noise_scale(run.model, run.d, tuple(run.p["noise_scale_batches"]), run.p["noise_scale_draws"],
                                 run.probe, run.p.get("micro_batch"))
    restore(saved, run.model, run.opt, run.device)
    return value


def gradient_noise_scale(model, d, sizes: tuple[int, int], draws: int, gen: torch.Generator,
                         chunk: int | None = None) -> float:
    """The simple noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018, appendix A), from the
    mean squared norm of mini-batch gradients at two batch sizes: E|G_B|² = |G|² + tr(Σ)/B.
    Batches are drawn with replacement from the training set at the current weights; nothing is
    updated (the caller restores batch-norm statistics and RNG). A batch larger than `chunk` (the
    spec's micro_batch) takes its gradient in chunks that add up to it, as the training step does."""
    params = [q for q in model.parameters() if q.requires_grad]
    mean_sq = []
    for b in sizes:
        total = 0.0
        for _ in range(draws):
            idx = torch.randint(len(d.x_train), (b,), generator=gen, device=d.x_train.device)
            step = chunk if chunk and chunk < b else b
            grads = [torch.zeros_like(q) for q in params]
            for i in range(0, b, step):
                part = idx[i:i + step]
                loss = F.cross_entropy(model(d.normalise(d.x_train[part])), d.y_train[part], reduction="sum") / b
                for g, dg in zip(grads, torch.autograd.grad(loss, params)):
                    g.add_(dg)
            total += sum(g.pow(2).sum() for g in grads).item()
        mean_sq.append(total / draws)
    return noise_scale_from_norms(sizes, tuple(mean_sq))


def noise_scale_from_norms(sizes: tuple[int, int], mean_sq: tuple[float, float]) -> float:
    """B_simple = tr(Σ) / |G|² from mean squared gradient norms at batch sizes b < B, solving
    E|G_b|² = |G|² + tr(Σ)/b for both sizes; NaN where either estimate is not positive (too few
    draws for the noise: the smaller batch's gradients must be the noisier)."""
    (b_small, b_big), (g_small, g_big) = sizes, mean_sq
    g2 = (b_big * g_big - b_small * g_small) / (b_big - b_small)
    trace = (g_small - g_big) / (1 / b_small - 1 / b_big)
    return trace / g2 if g2 > 0 and trace > 0 else math.nan
