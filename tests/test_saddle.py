"""The zero-initialisation mechanism the report states, measured: one backward pass at zero init gives a
gradient to the output bias only (a dead saddle); a constant non-zero init, as symmetric, does not."""
from __future__ import annotations

from batchwise.engine import models
from batchwise.analysis import saddle


def test_zero_init_leaves_only_the_output_bias_with_a_gradient():
    got = saddle.zero_init_gradients("mnist_cnn", (1, 28, 28))
    assert got["nonzero"] == [got["output_bias"]] == ["head.3.bias"]
    assert got["n_tensors"] == 8 and got["grads"]["head.3.bias"] > 0.005   # softmax(0) = 1/10 minus label shares
    assert all(g == 0.0 for name, g in got["grads"].items() if name != "head.3.bias")
    assert "only the output bias (head.3.bias)" in saddle.gradient_sentence(got, "mnist_cnn")


def test_a_constant_nonzero_init_is_symmetric_but_not_dead():
    got = saddle.zero_init_gradients("mnist_cnn", (1, 28, 28), scheme=0.01)
    assert len(got["nonzero"]) > 1 and "head.0.weight" in got["nonzero"]


def test_the_measurement_uses_the_projects_own_initialisation(monkeypatch):
    """If `models.initialise('zeros')` stopped zeroing (here: it does nothing), the test above would see
    gradients everywhere: the measurement is of the code the studies train with."""
    monkeypatch.setattr(models, "initialise", lambda model, scheme: None)
    got = saddle.zero_init_gradients("mnist_cnn", (1, 28, 28))
    assert len(got["nonzero"]) == got["n_tensors"]
