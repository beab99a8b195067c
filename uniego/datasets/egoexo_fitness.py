"""EgoExo-Fitness: the 12 action classes, the official train/test `subset`, ego and exo views by name.

Reads the ActivityNet-1.3-style action file of the release
(`{classes: [...], database: {"<actor>_<seq>_<view>": {annotations: [{label, segment: [s, e]
seconds, ...}], subset, view, actor, ...}}}`): one entry per recording sequence and view, one
annotation per single action. The ego view's entry and the exo view's entry of the same
`<actor>_<seq>` are paired annotation by annotation (same count and labels, else an error);
the split is the ego entry's `subset` (the student sees the ego view). Which views UNIEGO
paired is not documented: ego_m (forward-facing) and exo_m (frontal) by default.

EgoExo-Fitness releases frames; ask its authors for the raw videos and put one video per
sequence and view where `options.video` says (a template over {key} {actor} {view} {group}).
It releases no body pose: the exo_skl and exo_skego teachers need a folder of per-clip
keypoint files (`options.skeletons`, docs/datasets.md, "Skeletons").
"""

from __future__ import annotations

from pathlib import Path

from uniego.datasets.common import Built, read_json, require_keys, rows_frame, skeleton_file
from uniego.errors import UniegoError

PAPER_CLASSES = ["Clap Jacks", "High Knee", "Jumping Jacks", "Kneeling Right-side Torso Twist", "Kneeling pushing-ups",
           "Left Leg Lunge With Knee Lift", "Left-side Knee Raise And Abdominal Muscles Contract", "Push-ups",
           "Right Leg Reverse Lunge", "Shoulder Bridge", "Sit-ups", "Sumo Squat"]
SUBSETS = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test", "testing": "test"}

DEFAULTS = {
    "annotations": "annotations/subaction_level_annotations_ant13_style_v1.json",
    "video": "videos/{key}.mp4",
    "ego_view": "ego_m",
    "exo_view": "exo_m",
    "unpaired": "error",
    "skeletons": None,
    "classes": PAPER_CLASSES,   # the 12 actions (label_bank_coarse.json order); null: the file's `classes`
}
LAYOUT = """  annotations/subaction_level_annotations_ant13_style_v1.json   (options.annotations)
  videos/<actor>_<seq>_<view>.mp4, e.g. videos/FQPS6Y_4-3-1_ego_m.mp4   (options.video, a template)
  skeletons/<sample_id>.npz    only for the exo_skl / exo_skego teachers (options.skeletons)"""


def annotation_files(root: Path, opts: dict) -> list[Path]:
    return [root / opts["annotations"]]


def skeleton_source(root: Path, opts: dict) -> str | None:
    return None if opts["skeletons"] is None else str(root / opts["skeletons"])


def _entries(path: Path, db: dict, view: str) -> dict[str, tuple[str, dict]]:
    """group (`<actor>_<seq>`) -> (key, entry) of one view."""
    out = {}
    for key, e in db.items():
        require_keys(e, ("annotations", "subset", "view"), f"{path}: database[{key!r}]")
        if e["view"] != view:
            continue
        if not key.endswith(f"_{view}"):
            raise UniegoError(f"{path}: database key {key!r} does not end with its view '_{view}'", stage="manifest")
        out[key[: -len(view) - 1]] = (key, e)
    return out


def build(root: Path, opts: dict, ds: str) -> Built:
    path = root / opts["annotations"]
    obj = read_json(path)
    require_keys(obj, ("classes", "database"), str(path))
    classes = [str(c) for c in (opts["classes"] or obj["classes"])]
    source = "options.classes" if opts["classes"] else "the file's classes"
    ego, exo = _entries(path, obj["database"], opts["ego_view"]), _entries(path, obj["database"], opts["exo_view"])
    if not ego:
        views = sorted({e.get("view") for e in obj["database"].values()})
        raise UniegoError(f"{path}: no entry has view {opts['ego_view']!r} (options.ego_view); views present: {views}",
                          stage="manifest")
    skeletons = skeleton_source(root, opts)
    rows, unpaired = [], []
    for group in sorted(ego):
        key, e = ego[group]
        if e["subset"] not in SUBSETS:
            raise UniegoError(f"{path}: database[{key!r}].subset {e['subset']!r} is not train/val/test", stage="manifest")
        partner = exo.get(group)
        anns = e["annotations"]
        if partner is not None and len(partner[1]["annotations"]) != len(anns):
            raise UniegoError(f"{path}: {key!r} has {len(anns)} actions but {partner[0]!r} has "
                              f"{len(partner[1]['annotations'])}; the views must annotate the same actions", stage="manifest")
        for i, a in enumerate(anns):
            where = f"{path}: database[{key!r}].annotations[{i}]"
            require_keys(a, ("label", "segment"), where)
            sample_id = f"{group}_{i:03d}"
            if partner is None:
                unpaired.append(f"{sample_id} ({key}): no {opts['exo_view']} entry {group}_{opts['exo_view']}")
                continue
            b = partner[1]["annotations"][i]
            require_keys(b, ("label",), f"{path}: database[{partner[0]!r}].annotations[{i}]")
            if b["label"] != a["label"]:
                raise UniegoError(f"{where}: label {a['label']!r} differs from {partner[0]!r}'s {b['label']!r}", stage="manifest")
            if a["label"] not in classes:
                raise UniegoError(f"{where}: label {a['label']!r} is not in {source} ({', '.join(classes)})",
                                  stage="manifest")
            start, end = map(float, a["segment"])
            fields = {"actor": e.get("actor", ""), "group": group}
            rows.append({"sample_id": sample_id, "split": SUBSETS[e["subset"]], "label": classes.index(a["label"]),
                         "class_name": a["label"],
                         "ego_video": str(root / opts["video"].format(key=key, view=opts["ego_view"], **fields)),
                         "exo_video": str(root / opts["video"].format(key=partner[0], view=opts["exo_view"], **fields)),
                         "start": start, "end": end, "skeleton": skeleton_file(skeletons, sample_id)})
    return Built(rows_frame(rows), classes, unpaired=unpaired, sources=[str(path)])
