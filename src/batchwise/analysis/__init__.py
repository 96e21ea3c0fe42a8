"""The analyses a study's figures call for, computed from its runs table by the workflow.

Rule `analyse_study` writes `results/<study>/analysis.json` (`analyse.write_study_analysis`); the report
shows its blocks as they are, in order, knowing no analysis by name. One module per kind:

- `half_failure`: where half of the runs fail to train (figure kind `trained_share`);
- `bend`: where steps to target bend, and the measured noise scale (figure kind `to_target`);
- `collapse`: models that answer one class for nearly every test image (every study), explained where
  a `predictions` figure asks;
- `zero_init`: the zero-initialisation measurement that explanation quotes. It needs torch, so it is
  its own cached job (`results/<study>/zero_init.json`), and nothing else here imports torch.

`registry.FIGURE_ANALYSES` maps figure kinds to analyses. Modules here may import `stats`,
`extensions`, `aggregate` and `config`; never `report` or `figures`.

What the results say: small-sample statistics, the homework claims and their verdicts,
and the analyses the figures and claims draw on.

May import: the base modules, batchwise.data, batchwise.engine and batchwise.results.
"""
