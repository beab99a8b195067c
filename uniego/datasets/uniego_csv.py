"""The official UNIEGO split-CSV layout, so users of the official code can switch.

`<csv_dir>/{train,val,test}.csv`, no header, each row `relative_video_path,label` (label an
integer 0..C-1), videos under `<video_prefix>`; each video is one pre-trimmed clip, used whole.
The exo partner of `<dir>/<name>_ego.mp4` is `<dir>/<name>_exo.mp4`: the official code's rule,
every "ego" in the file's base name replaced by "exo" (all occurrences, as the official
`str.replace` does). The sample id is the official feature key: the ego base name up to its
first "." (what `uniego import-features` looks up). Class names: `options.classes` (C names in
label order), or the label numbers as names when it is null (then `num_classes` is required).
"""

from __future__ import annotations

import os
from pathlib import Path

from uniego.datasets.common import Built, rows_frame, skeleton_file
from uniego.errors import UniegoError

DEFAULTS = {
    "csv_dir": ".",            # DATA.PATH_TO_DATA_DIR, relative to root
    "video_prefix": ".",       # DATA.PATH_PREFIX, relative to root
    "splits": ["train", "val", "test"],
    "classes": None,
    "num_classes": None,
    "unpaired": "error",
    "skeletons": None,
}
LAYOUT = """  <csv_dir>/train.csv, <csv_dir>/val.csv, <csv_dir>/test.csv   no header: relative_video_path,label
  <video_prefix>/<relative_video_path>        the ego clips, e.g. clips/P01_003_ego.mp4
  the same path with every 'ego' in the file name replaced by 'exo'   its exo partner"""


def annotation_files(root: Path, opts: dict) -> list[Path]:
    return [root / opts["csv_dir"] / f"{s}.csv" for s in opts["splits"]]


def skeleton_source(root: Path, opts: dict) -> str | None:
    return None if opts["skeletons"] is None else str(root / opts["skeletons"])


def official_key(path: str) -> str:
    """The official code's key of a clip: its base name up to the first '.'."""
    return os.path.basename(path).split(".")[0]


def exo_partner(rel: str) -> str:
    folder, name = os.path.split(rel)
    return os.path.join(folder, name.replace("ego", "exo"))


def _classes(opts: dict) -> list[str]:
    if opts["classes"]:
        if opts["num_classes"] is not None and opts["num_classes"] != len(opts["classes"]):
            raise UniegoError(f"options.num_classes {opts['num_classes']} != {len(opts['classes'])} class names", stage="manifest")
        return [str(c) for c in opts["classes"]]
    if not opts["num_classes"]:
        raise UniegoError("the uniego-csv adapter needs options.classes (names in label order) or options.num_classes",
                          stage="config")
    return [str(i) for i in range(int(opts["num_classes"]))]


def build(root: Path, opts: dict, ds: str) -> Built:
    from uniego.video import open_video

    classes = _classes(opts)
    prefix = root / opts["video_prefix"]
    skeletons = skeleton_source(root, opts)
    rows, unpaired, missing = [], [], []
    for split in opts["splits"]:
        path = root / opts["csv_dir"] / f"{split}.csv"
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        for i, line in enumerate(lines):
            where = f"{path} line {i + 1}"
            fields = line.split(",")
            if len(fields) != 2:
                raise UniegoError(f"{where}: {line!r} is not 'relative_video_path,label' (no header, exactly two fields)",
                                  stage="manifest")
            rel, label = fields[0].strip(), fields[1].strip()
            if not label.lstrip("-").isdigit() or not 0 <= int(label) < len(classes):
                raise UniegoError(f"{where}: label {label!r} is not an integer in 0..{len(classes) - 1}", stage="manifest")
            sample_id, exo_rel = official_key(rel), exo_partner(rel)
            if exo_rel == rel:
                raise UniegoError(f"{where}: {rel!r} has no 'ego' in its file name, so no exo partner can be derived",
                                  stage="manifest")
            ego, exo = str(prefix / rel), str(prefix / exo_rel)
            if not os.path.isfile(ego):
                missing.append(f"{where}: ego clip {ego} (sample {sample_id})")
                continue
            if not os.path.isfile(exo):
                unpaired.append(f"{sample_id} ({rel}): no exo clip {exo}")
                continue
            _, n, fps = open_video(ego, sample_id, stage="manifest")
            if n <= 0 or fps <= 0:
                raise UniegoError(f"{where}: video {ego} (sample {sample_id}) has no frames", stage="manifest")
            rows.append({"sample_id": sample_id, "split": split, "label": int(label), "class_name": classes[int(label)],
                         "ego_video": ego, "exo_video": exo, "start": 0.0, "end": n / fps,
                         "skeleton": skeleton_file(skeletons, sample_id)})
    if missing:
        raise UniegoError(f"{len(missing)} clip(s) listed in the CSVs do not exist:\n  " + "\n  ".join(missing[:20])
                          + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""), stage="manifest")
    return Built(rows_frame(rows), classes, unpaired=unpaired,
                 sources=[str(f) for f in annotation_files(root, opts)])
