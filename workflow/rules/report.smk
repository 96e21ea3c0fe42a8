from batchwise.provenance import reproducible_command


localrules:
    plot_figure,
    report_html,
    report_pdf,


rule plot_figure:
    message:
        "Plotting figure {wildcards.index} of {wildcards.study}"
    input:
        runs="results/{study}/runs.csv",
        history="results/{study}/history.csv",
        iterations="results/{study}/iterations.csv",
    output:
        report("reports/figures/{study}/fig{index}.svg", caption="../report/figure.rst", category="Figures", subcategory="{study}", labels={"study": "{study}", "figure": "{index}"}),
    log:
        "logs/plot_figure/{study}/fig{index}.log",
    benchmark:
        "benchmarks/plot_figure/{study}/fig{index}.tsv"
    conda:
        "../../envs/batchwise.yaml"
    script:
        "../scripts/plot_figure.py"


rule report_html:
    message:
        "Writing the HTML report"
    input:
        runs=expand("results/{study}/runs.csv", study=REPORTED),
        summaries=expand("results/{study}/summary.csv", study=REPORTED),
        analyses=expand("results/{study}/analysis.json", study=REPORTED),
        figures=all_figures(),
        claims=repo_file(config["claims"]),
        verdicts="results/claims.csv",
        homework=repo_file(config["homework_tables"]),
        template=repo_file("reports/templates/report.html.j2"),
        css=repo_file("reports/templates/report.css"),
    output:
        report("reports/report.html", category="Report", labels={"format": "HTML"}),
    log:
        "logs/report_html.log",
    benchmark:
        "benchmarks/report_html.tsv"
    params:
        # The command as a reader reruns it in a checkout (no machine paths); a wrapper that builds the
        # report for its own command (`results publish`) names that command in BATCHWISE_REPORT_COMMAND.
        command=os.environ.get("BATCHWISE_REPORT_COMMAND") or reproducible_command(sys.argv),
    conda:
        "../../envs/batchwise.yaml"
    script:
        "../scripts/report_html.py"


rule report_pdf:
    message:
        "Rendering the PDF report"
    input:
        "reports/report.html",
    output:
        report("reports/report.pdf", category="Report", labels={"format": "PDF"}),
    log:
        "logs/report_pdf.log",
    benchmark:
        "benchmarks/report_pdf.tsv"
    conda:
        "../../envs/batchwise.yaml"
    script:
        "../scripts/report_pdf.py"
