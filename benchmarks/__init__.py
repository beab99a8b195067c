"""uniego's benchmark suite: speed as ratios measured side by side in one run (README.md)."""
