"""A seed's record: the state saved between epochs (to resume), and the result of the finished run.

Both read a `train.SeedRun` by its attributes; neither changes the run.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import models

# The engine that trained a run, recorded in its metrics.json: 1 up to 2026-12 (one thread count chosen
# by the job, no micro-batches); 2 adds `micro_batch` chunks; 3 decides a CPU's mid-epoch target checks
# early (`check_images`); 4 flushes the CPU's subnormal floats to zero and evaluates 2x2 max-pooling
# on the CPU by strided views (`models.pin_fp32`, `models.MaxPool2d`). A step that is unchanged gives
# the same numbers under all four, up to values below 1.2e-38.
ENGINE_VERSION = 4
# What a run records as it goes, saved with its state after each epoch (see `state`).
RESUMED = ("epoch", "step_count", "images_seen", "history", "iterations", "train_time", "eval_time",
           "diverged_epoch", "epochs_to_target", "steps_to_target", "examples_to_target", "time_to_target",
           "stopped_at_target", "pred_counts", "check_images")


def _numpy_rng_state() -> tuple:
    """NumPy's global generator state in types that `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached


def _set_numpy_rng_state(state: tuple) -> None:
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def state(run) -> dict:
    """Everything the rest of the run depends on, after a finished epoch: weights and buffers,
    momentum, every random generator, records, counters and target bookkeeping."""
    cuda = run.device.type == "cuda"
    if run.stream is not None:  # work queued on this seed's stream (the noise-scale probe's restore)
        run.stream.synchronize()  # ends before the state is read, on whatever stream reads it
    return {"device_type": run.device.type, "model": run.model.state_dict(),
            "momentum": [b.detach().clone() for b in run.opt.buffers],
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(),
                    "cuda": torch.cuda.get_rng_state(run.device) if cuda else None,
                    "shuffle": run.shuffle.get_state(), "probe": run.probe.get_state()},
            "records": {k: getattr(run, k) for k in RESUMED}}


@torch.no_grad()
def load_state(run, saved: dict) -> None:
    """Continue `run` from `state()`; tensors are copied in place (captured graphs keep pointing at them)."""
    run.model.load_state_dict(saved["model"])
    for b, s in zip(run.opt.buffers, saved["momentum"]):
        b.copy_(s)
    rng = saved["rng"]
    torch.set_rng_state(rng["torch"])
    _set_numpy_rng_state(rng["numpy"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state(rng["cuda"], run.device)
    run.shuffle.set_state(rng["shuffle"])
    run.probe.set_state(rng["probe"])
    for k, v in saved["records"].items():
        setattr(run, k, v)
    if "check_images" not in saved["records"]:  # saved before checks counted their images
        run.check_images = None


def how_trained(run) -> dict:
    """How the engine trained the run: its version, the CPU threads of the process, the micro-batch
    chunk (None: whole batches) and the evaluation batch."""
    return {"version": ENGINE_VERSION, "threads": torch.get_num_threads(), "micro_batch": run.stepper.chunk,
            "eval_batch_size": run.p["eval_batch_size"]}


def result(run) -> dict:
    """{"metrics", "history", "iterations"} of the finished run."""
    last, done = run.history[-1], run.diverged_epoch is None
    final = lambda v: v if done else None  # noqa: E731 - a diverged run's numbers are not measurements
    labels = torch.bincount(run.d.y_test.cpu(), minlength=10).tolist()
    top = max(range(len(run.pred_counts)), key=run.pred_counts.__getitem__)
    noise = [r["noise_scale"] for r in run.history if math.isfinite(r.get("noise_scale", math.nan))]
    metrics = {
        "status": "ok" if done else "diverged", "diverged": not done, "diverged_epoch": run.diverged_epoch,
        "epochs_run": len(run.history),
        "final_train_loss": final(last["train_loss"]), "final_train_acc": final(last["train_acc"]),
        "final_test_loss": final(last["test_loss"]), "final_test_acc": final(last["test_acc"]),
        "final_running_loss": final(last["running_loss"]), "final_running_acc": final(last["running_acc"]),
        "first_epoch_running_loss": run.history[0]["running_loss"]
        if math.isfinite(run.history[0]["running_loss"]) else None,
        "best_test_acc": max((h["test_acc"] for h in run.history if math.isfinite(h["test_acc"])), default=None),
        "target_acc": run.p["target_acc"], "epochs_to_target": run.epochs_to_target,
        "steps_to_target": run.steps_to_target, "examples_to_target": run.examples_to_target,
        "time_to_target_s": run.time_to_target, "stopped_at_target": run.stopped_at_target,
        "train_time_s": final(run.train_time), "eval_time_s": final(run.eval_time),
        "total_time_s": final(run.train_time + run.eval_time), "mean_epoch_s": final(run.train_time / len(run.history)),
        "time_until_stop_s": run.train_time + run.eval_time,
        "steps_per_epoch": run.steps, "steps_run": run.step_count, "images_per_epoch": run.n,
        "train_eval_images": len(run.x_train_eval),
        "test_images": len(run.d.x_test), "check_images": run.check_images,
        "lr_effective": run.lr, "warmup_steps": run.warmup_steps,
        "noise_scale": float(np.median(noise)) if noise else None,
        "test_pred_counts": run.pred_counts if done else None, "test_label_counts": labels,
        "top_pred_class": top if done else None,
        "top_pred_share": final(run.pred_counts[top] / sum(run.pred_counts)),
        "cuda_graphs": bool(run.graphs), "cuda_graphs_note": run.graph_note,
        "n_params": models.n_params(run.model), "weights": run.weights_note,
        "engine": how_trained(run),
    }
    return {"metrics": metrics, "history": run.history, "iterations": run.iterations}


def epoch_line(run, row: dict) -> str:
    """The log line of a finished epoch, with the time left at this epoch's pace."""
    eta = (run.p["epochs"] - run.epoch) * run.train_time / run.epoch
    return (f"seed {run.seed} epoch {run.epoch}/{run.p['epochs']}  running_loss {row['running_loss']:.4f}  "
            f"train_acc {100 * row['train_acc']:.2f}%  test_loss {row['test_loss']:.4f}  "
            f"test_acc {100 * row['test_acc']:.2f}%  epoch {row['epoch_time_s']:.2f}s  ETA {eta:.0f}s")
