"""uniego: the UNIEGO method (proxies as mediators for a unified egocentric video encoder)
as an offline, incremental feature-cache pipeline. See README.md and DESIGN in the repo."""

__version__ = "0.1.0"
