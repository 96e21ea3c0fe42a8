localrules:
    resolved_config,


rule resolved_config:
    message:
        "Recording the resolved configuration (default config, overlays and --config merged)"
    output:
        "results/config.yaml",
    params:
        # The whole resolved config: any change to it rewrites this record, and nothing else.
        text=bw_config.dump(config),
    run:
        Path(output[0]).write_text(params.text)
