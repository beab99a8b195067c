"""uniego: the UNIEGO method (proxies as mediators for a unified egocentric video encoder)
as an offline, incremental feature-cache pipeline. See README.md and DESIGN in the repo."""

from uniego.version import __version__  # noqa: F401


def __getattr__(name):
    """`uniego.load_encoder` (uniego.encoder), imported on first use: `import uniego` stays light
    (Snakemake imports the package at every DAG build)."""
    if name == "load_encoder":
        from uniego.encoder import load_encoder
        return load_encoder
    raise AttributeError(f"module 'uniego' has no attribute {name!r}")
