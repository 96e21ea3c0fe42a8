"""The training engine: outputs and their schema, learning on real MNIST, graph/eager parity on CUDA."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from batchwise import config
from batchwise.data import prepare as data
from batchwise.engine import models, train
from conftest import REPO, SHARED_DATA

METRICS_KEYS = {
    "schema", "study", "cell", "setting", "seed", "spec", "data", "status", "diverged", "diverged_epoch",
    "epochs_run", "final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc", "best_test_acc",
    "final_running_loss", "final_running_acc", "first_epoch_running_loss", "epochs_to_target", "time_to_target_s",
    "train_time_s", "eval_time_s", "total_time_s", "mean_epoch_s", "time_until_stop_s", "steps_per_epoch",
    "images_per_epoch", "train_eval_images", "device", "cuda_graphs", "gpu_mem_peak_mb", "n_params",
    "startup_s", "env",
}
ENV_KEYS = {"python", "torch", "cuda", "cudnn", "device_name", "hostname", "cpu", "git", "cuda_visible_devices"}


def spec_for(model="mlp", dataset="mnist", seed=0, device="cpu", graphs="off", **params):
    cfg = {"data_dir": "data", "device": device, "cuda_graphs": graphs, "homeworks": {"x": {"title": "x"}},
           "studies": {"t": {
        "homework": "x", "title": "t", "dataset": dataset, "model": model, "seeds": [seed],
        "params": {k: v for k, v in params.items() if k != "batch_size"},
        "grid": {"batch_size": [params.get("batch_size", 64)]}}}}
    cfg = config.validate(cfg)
    return config.resolve(cfg, config.cells(cfg)[0])


def test_run_cell_writes_complete_outputs(synthetic_caches, tmp_path):
    spec = spec_for(epochs=2, lr=0.05, target_acc=0.5, train_subset=640)
    metrics = train.run_cell(spec, synthetic_caches["mnist"], tmp_path, log=lambda line: None)[0]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert METRICS_KEYS <= set(on_disk) and ENV_KEYS <= set(on_disk["env"])
    assert on_disk["status"] == metrics["status"] == "ok" and on_disk["epochs_run"] == 2
    assert on_disk["spec"] == spec and on_disk["steps_per_epoch"] == 640 // 64
    assert on_disk["env"]["torch"] == torch.__version__
    stages = on_disk["startup_s"]  # process age at each start-up stage, in order
    assert list(stages) == ["imports_done", "data_loaded", "data_on_device", "model_ready", "first_step"]
    assert list(stages.values()) == sorted(stages.values()) and stages["first_step"] == on_disk["first_step_process_age_s"]
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_acc"]) == pytest.approx(on_disk["final_test_acc"])
    iters = list(csv.DictReader((tmp_path / "iterations.csv").open()))
    assert len(iters) == 2 * 10 and all(math.isfinite(float(r["loss"])) for r in iters)
    assert on_disk["epochs_to_target"] in (1, 2)  # synthetic data is easy: the target is reached
    assert not list(tmp_path.glob(".*.tmp"))


def test_learns_above_chance_on_synthetic_data(synthetic_caches, tmp_path):
    spec = spec_for(model="cnn2", epochs=2, lr=0.1, momentum=0.9, bn=True)
    metrics = train.run_cell(spec, synthetic_caches["mnist"], tmp_path, log=lambda line: None)[0]
    assert metrics["final_test_acc"] > 0.5


def test_unavailable_data_is_recorded_not_crashed(tmp_path):
    cache = tmp_path / "mnist.npz"
    data.prepare("mnist", cache, data_dir=tmp_path / "nothing-here", download=False)
    metrics = train.run_cell(spec_for(), cache, tmp_path / "out", log=lambda line: None)[0]
    assert metrics["status"] == "no-data" and "MNIST" in metrics["reason"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["status"] == "no-data"


CUDA_GRAPHS = pytest.param("cuda", "on", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])


@pytest.mark.parametrize("device,graphs", [("cpu", "off"), CUDA_GRAPHS])
@pytest.mark.parametrize("batch_size,sizes", [(100, [100]), (64, [64, 36]), (40, [40, 40, 20])])
def test_every_image_every_epoch(synthetic_caches, monkeypatch, device, graphs, batch_size, sizes):
    """1, 2 and 3 steps per epoch: the last step takes the remainder, so an epoch is all 100 images;
    on CUDA with one captured graph per step shape."""
    seen = []
    build = models.build

    def recording_build(*args, **kwargs):
        model, note = build(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].shape[0]) if m.training else None)
        return model, note
    monkeypatch.setattr(train.models, "build", recording_build)
    visited = []
    step_on = train.Steps.on
    monkeypatch.setattr(train.Steps, "on",
                        lambda self, idx: (visited.append(idx.tolist()), step_on(self, idx))[1])
    spec = spec_for(device=device, graphs=graphs, epochs=2, batch_size=batch_size, lr=0.05, train_subset=100)
    result = train.train(spec, data.load(synthetic_caches["mnist"]), log=lambda line: None)
    m = result["metrics"]
    assert m["steps_per_epoch"] == len(sizes) and m["images_per_epoch"] == 100
    assert m["cuda_graphs"] is (graphs == "on")
    assert [step for step, _, _ in result["iterations"]] == list(range(1, 2 * len(sizes) + 1))
    if graphs == "off":  # graph replays run no Python forward; the eager steps are counted
        assert seen == sizes * 2
        # every training index exactly once per epoch (a remainder taken from the front of the
        # permutation would repeat images and skip others), and a fresh order in the second epoch
        per_epoch = [sorted(sum(visited[i * len(sizes):(i + 1) * len(sizes)], [])) for i in range(2)]
        assert per_epoch == [list(range(100))] * 2
        assert visited[:len(sizes)] != visited[len(sizes):]


def test_training_accuracy_is_measured_in_eval_mode_on_a_fixed_subset(synthetic_caches):
    """final_train_acc/loss are the model's eval-mode accuracy and loss on the seeded training subset
    as large as the test set, computed here independently; the running figures are another thing."""
    spec = spec_for(model="mnist_cnn", epochs=1, lr=0.05, momentum=0.9, train_subset=600, test_subset=200)
    cache = data.load(synthetic_caches["mnist"])
    result = train.train(spec, cache, log=lambda line: None)
    m, model = result["metrics"], result["model"].eval()
    idx = train.sample_indices(600, 200, spec["seed"])
    assert m["train_eval_images"] == 200 and len(set(idx.tolist())) == 200
    sub = train.sample_indices(len(cache.x_train), 600, train.SUBSET_SEED).numpy()   # train_subset's sample
    x = torch.from_numpy(cache.x_train[sub][idx.numpy()].transpose(0, 3, 1, 2).copy()).float() / 255
    x = (x - torch.tensor(cache.meta["mean"]).view(1, -1, 1, 1)) / torch.tensor(cache.meta["std"]).view(1, -1, 1, 1)
    y = torch.from_numpy(cache.y_train[sub][idx.numpy()].astype("int64"))
    with torch.no_grad():
        out = model(x)
    assert m["final_train_acc"] == pytest.approx((out.argmax(1) == y).float().mean().item(), abs=1e-6)
    assert m["final_train_loss"] == pytest.approx(torch.nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert m["final_running_acc"] != m["final_train_acc"]  # dropout on and weights moving: not the same number


def test_sample_indices_are_fixed_by_the_seed():
    a, b, c = (train.sample_indices(1000, 100, s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 100
    assert torch.equal(train.sample_indices(50, 100, 0), torch.arange(50))  # subset larger: all of it


def test_a_subset_of_class_ordered_data_holds_every_class():
    """CIFAR-10 from an ImageFolder is stored class by class: `train_subset: 2000` once meant 2,000
    airplanes (training accuracy 100 %, test accuracy 50 % on a 2,000-image test subset of two classes).
    A subset is a fixed random sample: every class, about its share, the same sample on every call."""
    y = np.repeat(np.arange(10, dtype=np.uint8), 500)           # 5,000 labels, sorted by class
    x = np.arange(5000, dtype=np.uint8).reshape(-1, 1, 1, 1).repeat(2, axis=1)
    xs, ys = train.to_device(x, y, 1000, torch.device("cpu"))
    counts = torch.bincount(ys, minlength=10)
    assert len(ys) == 1000 and counts.min() >= 70 and counts.max() <= 130, counts
    again = train.to_device(x, y, 1000, torch.device("cpu"))
    assert torch.equal(ys, again[1]) and torch.equal(xs, again[0])
    idx = train.sample_indices(5000, 1000, train.SUBSET_SEED)
    assert torch.equal(xs[:, 0, 0, 0], torch.from_numpy(x[idx.numpy(), 0, 0, 0]))   # images stay with labels
    assert len(train.to_device(x, y, 9999, torch.device("cpu"))[1]) == 5000   # larger than the data: all of it


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").exists(), reason=f"no real MNIST at {SHARED_DATA}")
def test_real_mnist_generalisation_gap_is_the_eval_mode_gap(tmp_path):
    """The case that exposed the old metric: the dropout net, 6,000 images, 2 epochs, batch 1000. The
    recorded gap is train minus test accuracy, both in eval mode, and it is positive (the running
    in-epoch accuracy, in train mode while the weights move, gave -21 pp here)."""
    from batchwise.results import aggregate

    cache = tmp_path / "mnist.npz"
    data.prepare("mnist", cache, data_dir=SHARED_DATA, download=False, strict=True)
    spec = spec_for(model="mnist_cnn", epochs=2, lr=0.01, momentum=0.9, batch_size=1000, train_subset=6000)
    metrics = train.run_cell(spec, cache, tmp_path / "out", log=lambda line: None)[0]
    gap = aggregate.runs_table([tmp_path / "out" / "metrics.json"], ["batch_size"])["generalisation_gap"].iloc[0]
    assert gap == pytest.approx(metrics["final_train_acc"] - metrics["final_test_acc"])
    assert gap > 0 > metrics["final_running_acc"] - metrics["final_test_acc"]


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").exists(), reason=f"no real MNIST at {SHARED_DATA}")
def test_real_mnist_learns(tmp_path):
    """A few hundred steps of the 2-layer CNN on a subset of real MNIST: far above chance."""
    cache = tmp_path / "mnist.npz"
    data.prepare("mnist", cache, data_dir=SHARED_DATA, download=False, strict=True)
    spec = spec_for(model="cnn2", epochs=1, lr=0.05, momentum=0.9, bn=True, batch_size=32,
                    train_subset=9600, test_subset=2000)
    metrics = train.run_cell(spec, cache, tmp_path / "out", log=lambda line: None)[0]
    assert metrics["steps_per_epoch"] == 300
    assert metrics["final_test_acc"] > 0.85


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model,params", [
    ("mlp", {"bn": True, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.001}),
    ("cnn2", {"bn": False, "lr": 0.05, "momentum": 0.01}),
    ("lenet5", {"lr": 0.1, "init": "xavier"}),
])  # MobileNetV2 is left out: its dropout draws differ between graph replay and eager
def test_graph_and_eager_agree_on_cuda(synthetic_caches, tmp_path, model, params):
    dataset = "mnist"
    runs = {}
    for graphs in ("off", "on"):
        spec = spec_for(model=model, dataset=dataset, device="cuda", graphs=graphs, epochs=2, batch_size=32,
                        train_subset=640, **params)
        runs[graphs] = train.train(spec, data.load(synthetic_caches[dataset]), log=lambda line: None)
    assert runs["on"]["metrics"]["cuda_graphs"] and not runs["off"]["metrics"]["cuda_graphs"]
    eager, graph = ([r[2] for r in runs[g]["iterations"]] for g in ("off", "on"))
    assert graph == pytest.approx(eager, rel=1e-3, abs=1e-4)
    assert runs["on"]["metrics"]["final_test_acc"] == pytest.approx(runs["off"]["metrics"]["final_test_acc"], abs=0.02)


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.01, 0.001), (0.9, 5e-4)])
def test_sgd_matches_torch_optim(momentum, weight_decay):
    """The engine's SGD gives torch.optim.SGD's parameters, step for step (BN buffers included)."""
    torch.manual_seed(0)
    ref, _ = models.build("mlp", (1, 8, 8), 10, bn=True)
    ours, _ = models.build("mlp", (1, 8, 8), 10, bn=True)
    ours.load_state_dict(ref.state_dict())
    opts = (torch.optim.SGD(ref.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay),
            train.SGD(ours.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay))
    for _ in range(5):
        x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
        for model, opt in zip((ref, ours), opts):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(ref.state_dict().values(), ours.state_dict().values()):
        assert torch.equal(a, b)


def test_training_imports_neither_dynamo_nor_torchvision(synthetic_caches, tmp_path):
    """Start-up cost: an MLP job must not pull in torch._dynamo (~1 s) or torchvision."""
    import subprocess
    import sys

    spec = spec_for(epochs=1, train_subset=640)
    code = ("import json, sys; from pathlib import Path; from batchwise.engine import train; "
            f"train.run_cell(json.loads({json.dumps(json.dumps(spec))}), Path(sys.argv[1]), Path(sys.argv[2]), "
            "log=lambda line: None); print(sorted(m for m in ('torch._dynamo', 'torchvision', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(synthetic_caches["mnist"]), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- seeds of a cell, learning-rate schedule, target, noise scale, predictions --------------------

def _without_times(result: dict) -> tuple:
    timing = ("epoch_time_s", "elapsed_s")
    metrics = {k: v for k, v in result["metrics"].items() if not k.endswith("_s") and k not in ("startup_s",)}
    history = [{k: v for k, v in row.items() if k not in timing} for row in result["history"]]
    return metrics, history, result["iterations"]


def test_seeds_trained_in_one_job_equal_each_seed_alone(synthetic_caches):
    """Bit for bit on the CPU: a cell's job trains its seeds one after another, each exactly as alone
    (dropout included: mnist_cnn draws random numbers every step)."""
    cache = data.load(synthetic_caches["mnist"])
    spec = spec_for(model="mnist_cnn", epochs=2, lr=0.05, momentum=0.9, batch_size=48, train_subset=200)
    together = train.train_seeds(spec, cache, [0, 1, 2], log=lambda line: None)
    for seed, packed in zip([0, 1, 2], together):
        alone = train.train({**spec, "seed": seed}, cache, log=lambda line: None)
        assert _without_times(packed) == _without_times(alone)
    assert _without_times(together[0]) != _without_times(together[1])


@pytest.mark.parametrize("scaling,expected", [("none", 0.1), ("linear", 0.4), ("sqrt", 0.2)])
def test_effective_lr_scales_with_the_batch(scaling, expected):
    p = {"lr": 0.1, "batch_size": 1024, "base_batch_size": 256, "lr_scaling": scaling}
    assert train.effective_lr(p) == pytest.approx(expected, rel=1e-12)


def test_warm_up_ramps_the_learning_rate_linearly(synthetic_caches, monkeypatch):
    """warmup_epochs 1 of 4 steps: lr x 1/4, 2/4, 3/4, 4/4, then the full rate (eager steps on the CPU)."""
    seen = []
    step = train.SGD.step
    monkeypatch.setattr(train.SGD, "step", lambda self: (seen.append(self.lr), step(self))[1])
    spec = spec_for(epochs=2, batch_size=50, train_subset=200, lr=0.4, warmup_epochs=1.0)
    result = train.train(spec, data.load(synthetic_caches["mnist"]), log=lambda line: None)
    assert result["metrics"]["warmup_steps"] == 4
    assert seen == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4, 0.4])


def test_stop_at_target_records_steps_and_examples(synthetic_caches):
    """Checked 4 times an epoch: the run stops at the first check where test accuracy reaches the
    target; steps and examples to target count exactly what was trained up to there."""
    spec = spec_for(model="lenet5", epochs=5, lr=0.05, batch_size=32, train_subset=600, target_acc=0.5,
                    stop_at_target=True, target_checks_per_epoch=4)
    result = train.train(spec, data.load(synthetic_caches["mnist"]), log=lambda line: None)
    m = result["metrics"]
    steps = m["steps_per_epoch"]  # 19: 18 of 32 images, one of 24
    assert steps == 19 and m["stopped_at_target"] and m["epochs_run"] == m["epochs_to_target"] < 5
    within = m["steps_to_target"] - (m["epochs_to_target"] - 1) * steps
    assert within in (5, 10, 15, 19)  # a check every ceil(19 / 4) = 5 steps, and one at the epoch's end
    assert m["examples_to_target"] == (m["epochs_to_target"] - 1) * 600 + min(within, 18) * 32 + (within == 19) * 24
    assert len(result["iterations"]) == m["steps_to_target"]  # no step after the stop


def test_correct_needed_matches_the_accuracy_comparison():
    """The fewest correct answers whose float64 accuracy reaches the target, on hand-picked cases."""
    from batchwise.engine.evaluation import correct_needed

    assert correct_needed(10000, 0.98) == 9800
    assert correct_needed(3, 2 / 3) == 2        # 2/3 in float64 is exactly the target
    assert correct_needed(7, 0.3) == 3          # 2/7 = 0.286 < 0.3 <= 3/7
    assert correct_needed(10, 0.0) == 0 and correct_needed(10, 1.0) == 10
    assert correct_needed(10, 1.01) == 11       # unreachable
    for n in (1, 7, 650, 10000):
        for t in (0.1, 0.5, 0.9, 0.97, 0.98, 0.99):
            c = correct_needed(n, t)
            assert c / n >= t and (c == 0 or (c - 1) / n < t)


def test_early_decided_check_gives_evaluate_s_verdict(synthetic_caches):
    """`reaches` (the CPU's target check) says exactly whether `evaluate`'s accuracy is at least the
    target, for targets one answer either side of the model's accuracy; far below, it stops reading early."""
    from batchwise.engine import models
    from batchwise.engine.evaluation import reaches

    cache = data.load(synthetic_caches["mnist"])
    x, y = torch.as_tensor(cache.x_test), torch.as_tensor(cache.y_test).long()
    norm = lambda t: t.float() / 255  # noqa: E731
    n = len(x)
    for seed in range(3):
        torch.manual_seed(seed)
        model = models.build("mlp", (1, 28, 28), 10)[0]
        acc = train.evaluate(model, x, y, norm, 64)[1].item()
        for target in (acc - 1 / n, acc, acc + 1 / n, acc + 1e-12, 0.0, 1.0):
            assert reaches(model, x, y, norm, 64, target)[0] == (acc >= target), (seed, acc, target)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    ok, read = reaches(model, x, y, norm, 64, 0.99)  # an untrained model: decided within a few batches
    assert not ok and 0 < len(calls) < math.ceil(n / 64) / 2 and read <= 64 * len(calls)
    assert reaches(model, x, y, norm, 64, 0.0) == (True, n)  # reached: every image read


def test_cpu_target_checks_stop_where_full_evaluation_would(synthetic_caches, monkeypatch):
    """The same run with the early-decided check and with a check that evaluates the whole test set:
    the same step to the target, the same numbers."""
    spec = spec_for(model="lenet5", epochs=5, lr=0.05, batch_size=32, train_subset=600, target_acc=0.5,
                    stop_at_target=True, target_checks_per_epoch=4)
    cache = data.load(synthetic_caches["mnist"])
    early = train.train(spec, cache, log=lambda line: None)
    monkeypatch.setattr(train, "reaches", lambda model, x, y, norm, bs, target:
                        (train.evaluate(model, x, y, norm, bs)[1].item() >= target, len(x)))
    full = train.train(spec, cache, log=lambda line: None)
    keys = ("steps_to_target", "examples_to_target", "epochs_to_target", "final_test_acc", "final_train_loss")
    assert [early["metrics"][k] for k in keys] == [full["metrics"][k] for k in keys]
    assert early["iterations"] == full["iterations"]


def test_noise_scale_from_two_batch_sizes_is_exact_on_known_norms():
    """E|G_B|² = |G|² + tr(Σ)/B with |G|² = 4, tr(Σ) = 32: 8 at B = 8, 5 at B = 32; B_simple = 32/4 = 8."""
    assert train.noise_scale_from_norms((8, 32), (8.0, 5.0)) == pytest.approx(8.0)
    assert math.isnan(train.noise_scale_from_norms((8, 32), (5.0, 8.0)))  # tr(Σ) estimate < 0: no estimate
    assert math.isnan(train.noise_scale_from_norms((8, 32), (8.0, 1.0)))  # |G|² estimate < 0: no estimate


def test_noise_scale_estimator_recovers_a_known_noise_scale():
    """A linear model at zero weights on 40 fixed examples: the per-example gradients are known, so
    B_simple = tr(Σ) / |G|² (Σ over the examples, as batches are drawn with replacement) is computed
    here from them directly; the estimator, from two batch sizes' mean squared norms, must find it."""
    torch.manual_seed(0)
    n, dim, classes = 40, 6, 3
    x = torch.randint(0, 256, (n, 1, 1, dim), dtype=torch.uint8)
    y = torch.arange(n) % classes
    d = train.DeviceData(x, y, x, y, torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(dim, classes))
    torch.nn.init.normal_(model[1].weight, std=0.01)
    per_example = []
    for i in range(n):
        g = torch.autograd.grad(torch.nn.functional.cross_entropy(model(d.normalise(x[i:i + 1])), y[i:i + 1]),
                                list(model.parameters()))
        per_example.append(torch.cat([t.flatten() for t in g]))
    g = torch.stack(per_example)
    mean = g.mean(0)
    truth = float(((g - mean) ** 2).sum(1).mean() / mean.pow(2).sum())
    got = train.gradient_noise_scale(model, d, (2, 20), 3000, torch.Generator().manual_seed(1))
    assert got == pytest.approx(truth, rel=0.1)
    assert 1 < truth < 1e4   # a noise scale of its own size, not a degenerate 0 or infinity


def test_noise_scale_in_chunks_equals_the_whole_batchs():
    """The probe's gradients taken in chunks (micro_batch) add up to the whole batch's: the same draws
    give the same B_simple to float rounding (chunks of 7 over batches of 20: 7+7+6)."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (60, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(60) % 10
    d = train.DeviceData(x, y, x, y, torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 255.0))
    model, _ = train.models.build("lenet5", (1, 28, 28), 10)
    whole, chunked = (train.gradient_noise_scale(model, d, (2, 20), 30, torch.Generator().manual_seed(3), chunk)
                      for chunk in (None, 7))
    assert math.isfinite(whole) and chunked == pytest.approx(whole, rel=1e-4)


def test_noise_scale_is_recorded_and_leaves_training_untouched(synthetic_caches):
    cache = data.load(synthetic_caches["mnist"])
    base = spec_for(model="cnn2", bn=True, epochs=2, lr=0.05, train_subset=400)
    plain = train.train(base, cache, log=lambda line: None)
    probed = train.train({**base, "params": {**base["params"], "noise_scale_batches": [8, 64]}}, cache,
                         log=lambda line: None)
    per_epoch = [r["noise_scale"] for r in probed["history"]]
    assert len(per_epoch) == 2 and all(math.isfinite(v) and v > 0 for v in per_epoch)
    assert probed["metrics"]["noise_scale"] == pytest.approx(float(np.median(per_epoch)))  # the run's: the median
    assert [r[2] for r in probed["iterations"]] == [r[2] for r in plain["iterations"]]  # BN stats, RNG restored


def test_zero_init_collapses_to_one_class_and_the_histogram_says_which(synthetic_caches):
    spec = spec_for(model="mnist_cnn", init="zeros", epochs=1, lr=0.05, momentum=0.9, train_subset=300)
    m = train.train(spec, data.load(synthetic_caches["mnist"]), log=lambda line: None)["metrics"]
    assert sum(m["test_pred_counts"]) == sum(m["test_label_counts"]) == 400
    assert m["top_pred_share"] == 1.0 and m["test_pred_counts"][m["top_pred_class"]] == 400
    assert m["final_test_acc"] == m["test_label_counts"][m["top_pred_class"]] / 400  # its class's share, exactly




def test_micro_batches_agree_with_whole_batches(synthetic_caches):
    """`micro_batch` cuts a batch into chunks whose gradients add up to the batch's: LeNet-5 trained in
    chunks of 24 (batches of 100, remainder 50: chunks 24+24+24+24+4 and 24+24+2) has every
    per-step loss within 1e-5 of the whole-batch run over 2 epochs, and the same outcome. At lr 0.05:
    at lr 0.1 with momentum 0.9 this run is at its edge of stability, where any rounding difference
    (1e-7 here) grows to 1e-3 in 14 steps on one thread: the dynamics', not the chunks' doing."""
    cache = data.load(synthetic_caches["mnist"])
    plain = spec_for(model="lenet5", epochs=2, batch_size=100, lr=0.05, momentum=0.9, train_subset=650)
    chunked = spec_for(model="lenet5", epochs=2, batch_size=100, lr=0.05, momentum=0.9, train_subset=650,
                       micro_batch=24)
    a, b = (train.train(s, cache, log=lambda line: None) for s in (plain, chunked))
    assert [loss for *_, loss in a["iterations"]] == pytest.approx([loss for *_, loss in b["iterations"]], abs=1e-5)
    for key in ("final_test_acc", "final_train_acc", "final_running_acc"):
        assert a["metrics"][key] == pytest.approx(b["metrics"][key], abs=1e-3), key
    assert a["metrics"]["engine"]["micro_batch"] is None and b["metrics"]["engine"]["micro_batch"] == 24
    assert b["metrics"]["engine"]["threads"] == torch.get_num_threads()


def test_micro_batch_at_or_above_the_batch_is_the_plain_step(synthetic_caches):
    """A batch no larger than `micro_batch` runs the plain step: bit-identical numbers."""
    cache = data.load(synthetic_caches["mnist"])
    plain = spec_for(model="lenet5", epochs=1, batch_size=64, lr=0.1, train_subset=320)
    a = train.train(plain, cache, log=lambda line: None)
    b = train.train({**plain, "params": {**plain["params"], "micro_batch": 64}}, cache, log=lambda line: None)
    assert a["iterations"] == b["iterations"] and a["history"][-1]["test_loss"] == b["history"][-1]["test_loss"]
    assert b["metrics"]["engine"]["micro_batch"] is None


@pytest.mark.parametrize("model,params", [("mnist_cnn", {}), ("mlp", {"bn": True}), ("cnn2", {"bn": True})])
def test_micro_batch_is_refused_where_a_chunk_changes_the_outputs(model, params):
    with pytest.raises(config.ConfigError, match="micro_batch.*depend on how a batch is cut"):
        spec_for(model=model, micro_batch=16, **params)


def test_eval_batch_size_changes_no_metric_beyond_rounding(synthetic_caches):
    """Evaluation in batches of 50 or 2000 gives the same accuracies and losses to float rounding."""
    cache = data.load(synthetic_caches["mnist"])
    specs = [spec_for(model="lenet5", epochs=1, lr=0.1, train_subset=640, test_subset=400, eval_batch_size=e)
             for e in (2000, 50)]
    a, b = (train.train(s, cache, log=lambda line: None)["history"][-1] for s in specs)
    assert a["running_loss"] == b["running_loss"]  # training itself is untouched
    for key in ("train_acc", "test_acc"):
        assert a[key] == b[key]
    for key in ("train_loss", "test_loss"):
        assert a[key] == pytest.approx(b[key], rel=1e-5)
