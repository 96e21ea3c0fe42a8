"""Grid expansion, cell ids and the resolved spec of a cell."""
import copy

import pytest
import yaml

from batchwise import config
from conftest import REPO


@pytest.fixture()
def default():
    return config.load(REPO / "config" / "config.yaml")


def test_default_config_expands_to_the_expected_cells(default):
    cells = config.cells(default)
    expected = sum(
        len(spec["seeds"]) * __import__("math").prod(len(v) for v in spec["grid"].values())
        for spec in default["studies"].values())
    assert len(cells) == expected == 427  # 126 homework runs, 301 of the extension studies
    assert len({(c.study, c.id) for c in cells}) == len(cells)


def test_cell_ids_are_readable_slugs(default):
    ids = [c.id for c in config.cells(default, "s2_bn_lr_mlp")]
    assert "bn=true_lr=0.1_seed=0" in ids
    assert "bn=false_lr=0.7_seed=4" in ids
    assert all(config.SLUG_RE.match(i) for c in config.cells(default) for i in (c.id,))


def test_resolve_merges_defaults_params_and_grid(default):
    cell = config.cell_by_id(default, "s2_bn_lr_cnn", "bn=true_lr=0.5_seed=3")
    spec = config.resolve(default, cell)
    assert spec["params"]["bn"] is True and spec["params"]["lr"] == 0.5
    assert spec["params"]["momentum"] == 0.01 and spec["params"]["weight_decay"] == 0.001
    assert spec["seed"] == 3 and spec["model"] == "cnn2" and spec["dataset"] == "mnist"
    assert spec["params"]["eval_batch_size"] == config.DEFAULT_PARAMS["eval_batch_size"]


def test_adding_a_grid_value_needs_no_code(default):
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["studies"]["s2_bn_lr_mlp"]["grid"]["lr"].append(0.3)
    cfg = config.validate(copy.deepcopy(raw))
    assert len(config.cells(cfg, "s2_bn_lr_mlp")) == 2 * 4 * 5


def test_unknown_cell_is_a_config_error(default):
    with pytest.raises(config.ConfigError, match="no cell"):
        config.cell_by_id(default, "s1_batch_init", "batch_size=7_seed=0")


@pytest.mark.parametrize("name", ["config.yaml", "quick.yaml", "smoke.yaml"])
def test_shipped_configs_are_valid(name):
    path = REPO / "config" / name
    if not path.exists():
        pytest.skip(f"{name} not present")
    assert config.cells(config.load(path))
