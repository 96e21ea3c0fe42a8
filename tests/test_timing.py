"""The solo timing pass (timing.py) and the compute times made from it (aggregate.solo_times).

Fast, on the CPU, on synthetic data. Where a duration is asserted it comes from a fake clock that
each kind of step and evaluation advances by a known amount, so the answers are exact."""
import json
import math

import pandas as pd
import pytest
import torch

from batchwise.results import aggregate
from batchwise import config
from batchwise.data import prepare as data
from batchwise.report import document as report
from batchwise.engine import timing, train


def spec_for(study="t", model="cnn2", batch_size=64, **params):
    """The resolved spec of a one-setting study (first seed), as the timing job receives it."""
    study_config = {"homework": "x", "title": study, "dataset": "mnist", "model": model, "seeds": [0],
                    "params": params, "grid": {"batch_size": [batch_size]}}
    cfg = config.validate({"data_dir": "data", "device": "cpu", "cuda_graphs": "off",
                           "homeworks": {"x": {"title": "x"}}, "studies": {study: study_config}})
    return config.resolve(cfg, config.cells(cfg)[0])


# 600 training images: batch 64 makes 9 full steps and a remainder of 24 (10 steps an epoch), and a
# warm-up of one epoch reaches the remainder; batch 100 divides them (6 steps) and has no warm-up.
WARM = spec_for("a", batch_size=64, lr=0.05, train_subset=600, test_subset=200, warmup_epochs=1.0)
PLAIN = spec_for("b", batch_size=100, lr=0.05, train_subset=600, test_subset=200)


def test_timing_files_hold_every_burst_interleaved_across_settings(synthetic_caches, tmp_path):
    outs = {"a": tmp_path / "a" / "timing.json", "b": tmp_path / "b" / "timing.json"}
    timing.time_studies([WARM, PLAIN], {"mnist": synthetic_caches["mnist"]}, outs, bursts=5, steps=2, warmup=1,
                        log=lambda line: None)
    files = {study: json.loads(path.read_text()) for study, path in outs.items()}
    warm, plain = files["a"]["settings"][0], files["b"]["settings"][0]
    assert files["a"]["bursts"] == warm["bursts"] == plain["bursts"] == 5
    # burst 1 of every setting (of every study), then burst 2, ...: the order they ran in
    sequence = files["a"]["sequence"]
    assert sequence == files["b"]["sequence"] and [b for _, _, b in sequence] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert all({tuple(s[:2]) for s in sequence[i:i + 2]} == {("a", WARM["setting"]), ("b", PLAIN["setting"])}
               for i in range(0, 10, 2))
    assert [i for i, s in enumerate(sequence) if s[0] == "a"] == warm["burst_sequence"]
    assert [i for i, s in enumerate(sequence) if s[0] == "b"] == plain["burst_sequence"]
    # each kind of step the setting's runs take, timed on its own in every burst; the others absent
    kinds = {"step", "remainder", "eager_step", "eager_remainder", "eval_test", "eval_train"}
    assert {k[:-len("_s_bursts")] for k in warm if k.endswith("_s_bursts")} == kinds
    assert {k[:-len("_s_bursts")] for k in plain if k.endswith("_s_bursts")} == {"step", "eval_test", "eval_train"}
    for record in (warm, plain):
        for key in (k for k in record if k.endswith("_s_bursts")):
            assert len(record[key]) == 5 and all(s > 0 for s in record[key]), key
            assert record[key[:-len("_bursts")]] == pytest.approx(sum(record[key]) / 5)
    assert warm["timed_per_burst"] == {"step": 2, "remainder": 1, "eager_step": 2, "eager_remainder": 1}
    assert (warm["steps_per_epoch"], warm["full_steps_per_epoch"], warm["remainder_batch"], warm["warmup_steps"]) \
        == (10, 9, 24, 10)
    assert plain["device"] == "cpu" and plain["env"]["torch"]


class FakeClock:
    """A clock that stands still except when a step or an evaluation advances it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


# Seconds charged by the fake clock: graph-speed full and remainder steps, eager (warm-up) ones, evaluations.
COST = {"step": 0.002, "remainder": 0.0005, "eager_step": 0.003, "eager_remainder": 0.001,
        "eval_test": 0.25, "eval_train": 0.125}


def test_each_kind_of_step_is_timed_as_itself(synthetic_caches, monkeypatch):
    """A fake clock charges each step by what the engine is doing: a remainder step (the epoch's last
    index), an eager warm-up step (step_count < warmup_steps), or a full step. The pass must find
    each kind's own cost, in every burst; and the evaluations' costs, warmed up beforehand."""
    clock = FakeClock()
    monkeypatch.setattr(timing, "clock", clock)
    advance, evaluate = train.SeedRun.advance, timing.evaluate

    def charged_advance(run, i):
        kind = ("eager_" if run.step_count < run.warmup_steps else "") + ("remainder" if i >= run.full else "step")
        advance(run, i)
        clock.now += COST[kind]

    def charged_evaluate(run, which):
        evaluate(run, which)
        clock.now += COST[which]
    monkeypatch.setattr(train.SeedRun, "advance", charged_advance)
    monkeypatch.setattr(timing, "evaluate", charged_evaluate)
    records = timing.time_settings([WARM, PLAIN], {"mnist": synthetic_caches["mnist"]}, bursts=5, steps=2,
                                   warmup=1, log=lambda line: None)["records"]
    warm, plain = records
    for key, cost in COST.items():
        assert warm[f"{key}_s_bursts"] == pytest.approx([cost] * 5, rel=1e-9), key
    assert plain["step_s_bursts"] == pytest.approx([0.002] * 5, rel=1e-9) and "remainder_s" not in plain
    assert warm["epoch_s"] == pytest.approx(9 * 0.002 + 0.0005) and plain["epoch_s"] == pytest.approx(6 * 0.002)
    assert warm["eval_s"] == pytest.approx(0.375)


def test_step_mix_counts_each_kind_of_step():
    """10 steps an epoch (9 full, then the remainder), 30 steps run: 3 remainders. Warm-up of 5 steps:
    5 eager full ones; of 10: the first epoch, its remainder included."""
    assert aggregate.step_mix(30, 10, True, 5) == {"step": 22, "remainder": 3, "eager_step": 5, "eager_remainder": 0}
    assert aggregate.step_mix(30, 10, True, 10) == {"step": 18, "remainder": 2, "eager_step": 9, "eager_remainder": 1}
    assert aggregate.step_mix(26, 10, True, 0) == {"step": 24, "remainder": 2, "eager_step": 0, "eager_remainder": 0}
    assert aggregate.step_mix(30, 10, False, 0) == {"step": 30, "remainder": 0, "eager_step": 0, "eager_remainder": 0}


# A timing record by hand: five bursts. Full steps 10 ms (±1 ms in two bursts), remainder 4 ms,
# eager warm-up steps 20 ms, test set 0.5 s, training subset 0.25 s.
RECORD = {"setting": "batch_size=64", "step_s_bursts": [0.010, 0.011, 0.009, 0.010, 0.010],
          "remainder_s_bursts": [0.004] * 5, "eager_step_s_bursts": [0.020] * 5,
          "eval_test_s_bursts": [0.5] * 5, "eval_train_s_bursts": [0.25] * 5}


def run_metrics(**over):
    """A run's metrics.json, as far as solo_times reads it: 600 images at batch 64 (10 steps an epoch,
    the last one on the remainder), 5 warm-up steps."""
    m = {"steps_per_epoch": 10, "images_per_epoch": 600, "warmup_steps": 5, "steps_run": 30, "epochs_run": 3,
         "steps_to_target": None, "epochs_to_target": None,
         "spec": {"params": {"batch_size": 64, "target_acc": None, "target_checks_per_epoch": 1}}}
    return {**m, **over}


def test_solo_times_charge_each_kind_of_step_at_its_own_cost():
    """Hand-computed. 30 steps = 22 full + 3 remainder + 5 eager warm-up steps; per burst the training
    time is 22 x step + 3 x 0.004 + 5 x 0.020 = 0.332 s, but 0.354 and 0.310 in the bursts where a
    step took 11 and 9 ms: SE = sqrt(2 x 0.022² / 4) / sqrt(5) = 0.022 / sqrt(10). Charging the
    remainder as a full step would give 0.350 s; warm-up steps at graph speed 0.282 s."""
    times = aggregate.solo_times(run_metrics(), RECORD)
    assert times["train_time_s"] == pytest.approx(0.332)
    assert times["train_time_s_se"] == pytest.approx(0.022 / math.sqrt(10))
    assert times["eval_time_s"] == pytest.approx(3 * 0.75) and times["eval_time_s_se"] == pytest.approx(0, abs=1e-15)
    assert times["total_time_s"] == pytest.approx(2.582)
    assert times["total_time_s_se"] == pytest.approx(0.022 / math.sqrt(10))
    assert times["mean_epoch_s"] == pytest.approx(9 * 0.010 + 0.004)  # an epoch after warm-up
    assert times["mean_epoch_s_se"] == pytest.approx(9 * 0.001 * math.sqrt(2 / 4) / math.sqrt(5))
    assert times["time_to_target_s"] is None and times["time_to_target_s_se"] is None
    assert times["timing_bursts"] == 5


def test_solo_times_count_mid_epoch_checks_and_stop_at_the_target():
    """4 checks an epoch of 10 steps: one after every 3 steps but the last (steps 3, 6, 9); the run
    reaches the target at step 26 (6 steps into epoch 3) and stops: 3 + 3 + 2 = 8 checks of the test
    set (0.5 s) and 3 epoch ends (0.75 s): 6.25 s. Steps to target: 19 full + 2 remainder + 5 eager =
    0.19 + 0.008 + 0.1 = 0.298 s (SE 19 x 0.001 x sqrt(1/2) / sqrt(5)); no evaluation in it."""
    m = run_metrics(steps_run=26, epochs_run=3, steps_to_target=26, epochs_to_target=3,
                    spec={"params": {"batch_size": 64, "target_acc": 0.9, "target_checks_per_epoch": 4}})
    assert aggregate.mid_epoch_checks(m) == 8
    times = aggregate.solo_times(m, RECORD)
    assert times["eval_time_s"] == pytest.approx(6.25)
    assert times["time_to_target_s"] == pytest.approx(0.298)
    assert times["time_to_target_s_se"] == pytest.approx(0.019 / math.sqrt(10))
    assert times["train_time_s"] == times["time_to_target_s"]  # it stopped there
    # never reached in 3 epochs: 3 checks each; reached at an epoch's end (step 20): 3 + 3
    assert aggregate.mid_epoch_checks({**m, "steps_to_target": None, "epochs_to_target": None}) == 9
    assert aggregate.mid_epoch_checks({**m, "steps_to_target": 20, "epochs_to_target": 2}) == 6


@pytest.mark.parametrize("target,lr", [(0.05, 0.05), (0.999, 1e-5)])  # reached at the first check / never
def test_mid_epoch_checks_are_the_evaluations_the_engine_ran(synthetic_caches, monkeypatch, target, lr):
    """The count of checks solo_times charges equals the test-set evaluations a real run made
    between its steps (every evaluation call but the two at each epoch's end)."""
    calls, read = [], []
    evaluate, reaches = train.evaluate, train.reaches
    monkeypatch.setattr(train, "evaluate", lambda *args: calls.append(1) or evaluate(*args))

    def counted(*args):
        calls.append(1)
        verdict = reaches(*args)
        read.append(verdict[1])
        return verdict

    monkeypatch.setattr(train, "reaches", counted)
    spec = spec_for(batch_size=64, lr=lr, epochs=2, train_subset=600, test_subset=200, target_acc=target,
                    target_checks_per_epoch=4)
    m = {**train.train(spec, data.load(synthetic_caches["mnist"]), log=lambda line: None)["metrics"], "spec": spec}
    assert (m["epochs_to_target"] == 1) if target < 0.5 else (m["epochs_to_target"] is None)
    assert aggregate.mid_epoch_checks(m) == len(calls) - 2 * m["epochs_run"] > 0
    # Charged as the share of the test set the checks read: the images `reaches` reported, over 200.
    assert m["test_images"] == 200 and m["check_images"] == sum(read)
    assert aggregate.checks_read(m) == pytest.approx(sum(read) / 200)
    assert aggregate.checks_read({**m, "check_images": None}) == aggregate.mid_epoch_checks(m)


def test_warmup_steps_are_charged_at_the_eager_cost():
    """Eager warm-up steps cost 20 ms, graph steps 10 ms: a run of 30 steps with 10 warm-up steps
    (the first epoch: 9 eager full + 1 eager remainder at 8 ms) costs 18 x 0.010 + 2 x 0.004 + 9 x 0.020
    + 0.008 = 0.376 s; with no warm-up, 27 x 0.010 + 3 x 0.004 = 0.282 s."""
    record = {**RECORD, "eager_remainder_s_bursts": [0.008] * 5}
    assert aggregate.solo_times(run_metrics(warmup_steps=10), record)["train_time_s"] == pytest.approx(0.376)
    assert aggregate.solo_times(run_metrics(warmup_steps=0), record)["train_time_s"] == pytest.approx(0.282)
    with pytest.raises(ValueError, match="no eager_remainder steps timed"):
        aggregate.solo_times(run_metrics(warmup_steps=10), RECORD)


def test_deterministic_kernels_are_on_for_the_settings_that_ask(synthetic_caches, monkeypatch):
    """`deterministic: true` holds while that setting's steps run, as in its training job; not for the
    setting that does not ask (the pass alternates between them)."""
    state = {"on": False}
    monkeypatch.setattr(train, "deterministic_kernels", lambda on: state.update(on=on))
    seen = {}
    advance = train.SeedRun.advance

    def watched(run, i):
        seen.setdefault(run.spec["study"], set()).add(state["on"])
        advance(run, i)
    monkeypatch.setattr(train.SeedRun, "advance", watched)
    timing.time_settings([{**WARM, "deterministic": True}, PLAIN], {"mnist": synthetic_caches["mnist"]}, bursts=2,
                         steps=1, warmup=1, log=lambda line: None)
    assert seen == {"a": {True}, "b": {False}}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_timing_pass_on_cuda_replays_graphs_for_every_kind_of_step(synthetic_caches, monkeypatch):
    """On CUDA every timed step is a graph replay, warm-up steps included (the graph reads the rate
    from the device): after capture, the eager step function never runs; every kind has its bursts."""
    spec = {**spec_for("a", model="lenet5", batch_size=64, lr=0.05, train_subset=600, test_subset=200,
                       warmup_epochs=1.0), "device": "cuda", "cuda_graphs": "on"}
    eager_after_capture, step_on, warm_up = [], train.SeedRun._step_on, timing.warm_up
    captured = []

    def counted_step_on(run, idx):
        if captured:
            eager_after_capture.append(1)
        step_on(run, idx)
    monkeypatch.setattr(train.SeedRun, "_step_on", counted_step_on)
    monkeypatch.setattr(timing, "warm_up", lambda t, count: (captured.append(1), warm_up(t, count))[1])
    record = timing.time_settings([spec], {"mnist": synthetic_caches["mnist"]}, bursts=5, steps=50, warmup=10,
                                  log=lambda line: None)["records"][0]
    assert record["cuda_graphs"] and record["device"].startswith("cuda") and captured
    assert all(len(record[f"{k}_s_bursts"]) == 5 for k in ("step", "remainder", "eager_step", "eager_remainder"))
    assert all(math.isfinite(v) and v > 0 for k in ("step", "remainder", "eager_step", "eager_remainder")
               for v in record[f"{k}_s_bursts"])
    assert not eager_after_capture
    assert record["precision"]["cudnn_allow_tf32"] is False


def test_report_says_what_the_times_are_and_keeps_the_wall_times():
    """The results table's note names the compute time and its bursts; the run-times table keeps the
    runs' own wall times beside the compute time; without a timing pass, wall time."""
    solo = pd.DataFrame([{"study": "s", "cell": "c", "status": "ok", "outcome": "trained", "time_basis": "solo",
                          "timing_bursts": 5, "time_until_stop_s": 9.0, "train_time_s": 2.0, "wall_train_time_s": 8.0,
                          "total_time_s": 2.5, "total_time_s_se": 0.125}])
    note = report.time_note(solo)
    assert note.startswith(f"Times: {aggregate.TIME_BASIS_TEXT} (") and "the mean of 5 interleaved timing bursts" in note
    assert report.run_time_summary(solo) == [["s", "1 (1 trained)", "9", "8.0", "2.5", "–"]]
    wall = solo.assign(time_basis="wall", train_time_s=8.0).drop(columns=["wall_train_time_s", "timing_bursts"])
    assert report.time_note(wall).startswith("Times: the runs' own wall time (no timing pass yet")
    mixed = pd.concat([solo, wall])
    assert report.time_note(mixed).startswith("Times: the runs' own wall time for 1 of 2 completed runs")
    assert report.run_time_summary(wall) == [["s", "1 (1 trained)", "9", "8.0", "no timing pass", "–"]]


def test_a_figure_of_times_says_which_times_it_plots():
    """A figure of a time metric carries the table's note (timing pass or wall time); other figures keep
    the config's caption as it is."""
    wall = pd.DataFrame([{"status": "ok", "time_basis": "wall"}, {"status": "ok", "time_basis": "wall"},
                         {"status": "no-data", "time_basis": None}])
    bars = {"kind": "bars", "metrics": ["final_test_acc", "total_time_s"], "caption": "Accuracy and time."}
    curves = {"kind": "curves", "metrics": ["test_acc"], "caption": "Curves."}
    assert report.figure_caption(bars, wall) == ("Accuracy and time. Times: the runs' own wall time (no timing "
                                                 "pass yet: other runs may have shared the device; they are not "
                                                 "compute times measured alone).")
    assert report.figure_caption(curves, wall) == "Curves."
    assert report.figure_caption(bars, wall.iloc[2:]) == "Accuracy and time."  # no completed run: nothing to say


def test_settings_left_out_stay_alive_and_the_cache_is_never_emptied(synthetic_caches, monkeypatch):
    """A setting that runs out of memory mid-pass is left out of the later bursts, but its run (on CUDA
    its graphs, whose stream's cuBLAS workspace other live graphs may share) stays alive until the
    pass ends, and nothing hands the device's freed memory back while any run lives."""
    import gc
    import weakref

    built, build = [], timing.build
    monkeypatch.setattr(timing, "build", lambda *a, **k: (t := build(*a, **k), built.append(weakref.ref(t.run)))[0])
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(sum(r() is not None for r in built)))
    alive_later, burst = [], timing.burst

    def burst_or_oom(t, *shared):
        if t.spec["study"] == "a" and len(t.sequence) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        if t.spec["study"] == "b" and len(t.sequence) >= 2:
            gc.collect()  # a run's lambdas refer to it: only the collector frees one no longer kept
            alive_later.append(built[0]() is not None)
        burst(t, *shared)
    monkeypatch.setattr(timing, "burst", burst_or_oom)
    got = timing.time_settings([WARM, PLAIN], {"mnist": synthetic_caches["mnist"]}, bursts=4, steps=1, warmup=1,
                               log=lambda line: None)
    assert got["records"][0] == {"study": "a", "setting": WARM["setting"], "error": "CUDA out of memory"}
    assert got["records"][1]["bursts"] == 4
    assert alive_later == [True, True]  # bursts 3 and 4 of b: a's run still alive
    assert all(live == 0 for live in emptied), emptied


def test_bursts_run_in_a_seeded_order_and_share_the_evaluation_of_one_network(synthetic_caches, monkeypatch):
    """Settings that differ in training parameters only are evaluated once per burst, on the model of the
    first of them in that burst's order; others are timed on their own. The order changes from burst to
    burst, the same in every pass."""
    specs = [spec_for("a", batch_size=b, lr=lr, train_subset=600, test_subset=200) for b, lr in ((64, 0.05), (100, 0.1))]
    specs.append(spec_for("c", model="mlp", batch_size=64, train_subset=600, test_subset=200))
    specs.append(spec_for("d", batch_size=64, train_subset=600, test_subset=100))  # fewer test images: its own
    calls = []
    evaluate = timing.evaluate
    monkeypatch.setattr(timing, "evaluate", lambda run, which: (calls.append((run.spec["study"], which)), evaluate(run, which)))

    def one_pass():
        calls.clear()
        return timing.time_settings(specs, {"mnist": synthetic_caches["mnist"]}, bursts=6, steps=1, warmup=1,
                                    log=lambda line: None)
    got = one_pass()
    # warm-up: every setting evaluates; then per burst one evaluation of each kind of network: a, c, d
    timed = calls[2 * len(specs):]
    assert len(timed) == 6 * 3 * 2 and {study for study, _ in timed} == {"a", "c", "d"}
    a1, a2, c, d = got["records"]
    names = [f"a/{a1['setting']}", f"a/{a2['setting']}"]
    assert a1["eval_timed_on"] == a2["eval_timed_on"] and set(a1["eval_timed_on"]) <= set(names)
    assert c["eval_timed_on"] == [f"c/{c['setting']}"] * 6 and d["eval_timed_on"] == [f"d/{d['setting']}"] * 6
    assert a1["eval_test_s_bursts"] == a2["eval_test_s_bursts"] and a1["eval_train_s_bursts"] == a2["eval_train_s_bursts"]
    for b in range(6):  # the setting that timed it came first among the two in that burst
        first = min((a1, a2), key=lambda r: r["burst_sequence"][b])
        assert a1["eval_timed_on"][b] == f"a/{first['setting']}"
    orders = [[tuple(s[:2]) for s in got["sequence"] if s[2] == b] for b in range(1, 7)]
    assert len(set(map(tuple, orders))) > 1  # not the same order in every burst
    assert one_pass()["sequence"] == got["sequence"]  # seeded
