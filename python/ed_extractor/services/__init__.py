"""The services the pipeline is built from: probing, transferring, API access."""
