"""Backbones we write ourselves because no library has them: TimeSformer (divided
space-time attention, built from timm layers) and ST-GCN (pyskl key names)."""
