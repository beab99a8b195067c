"""Built-in synthetic ego-exo dataset: a 3-D stick-figure actor (COCO-17 joints) doing
parametric full-body exercises, filmed by a fixed exo camera and a head-mounted ego camera."""
