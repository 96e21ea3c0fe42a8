"""Collapse: models that answer one class for nearly every test image, and (where a `predictions`
figure asks) why a zero-initialised network does, with the zero-init measurement quoted."""
from __future__ import annotations

import pandas as pd

from . import extensions as ext
from .common import block, explains

KIND = "collapse"
HEADER = ["setting", "runs collapsed", "class", "runs answering it", "its share of the predictions", "test accuracy",
          "that class's share of the test set"]
CAPTION = ("A run collapsed when one class took at least 90 % of its test-set predictions after the last epoch "
           "(diverged runs have no predictions). A row per class the collapsed runs answer, with the mean shares and "
           "accuracy of the runs answering it; a constant answer scores exactly that class's share of the test set.")


def analyse(study: dict, runs: pd.DataFrame, measured: str = "") -> dict | None:
    """The study's collapsed settings wherever they occur, and the explanation where it asks for one
    (`measured`: the zero-init sentence); None where nothing collapsed and nothing is to be explained."""
    collapsed = ext.collapsed_settings(runs, list(study["grid"])) if "top_pred_share" in runs else []
    explain = explains(study)
    if not (collapsed or explain):
        return None
    return block(KIND, "Collapsed models: one class for nearly every test image", HEADER,
                 ext.collapse_rows(collapsed, study["dataset"]), caption=CAPTION,
                 explain=ext.collapse_paragraph(collapsed, study["dataset"], measured=measured) if explain else "",
                 empty="No run collapsed: no model gave one class 90 % or more of the test images.")
