"""The report: figures (the workflow's `plot_figure`) and the HTML/PDF document
(`report_html`, `report_pdf`).

May import: the base modules, batchwise.data, batchwise.engine, batchwise.results and
batchwise.analysis.
"""
