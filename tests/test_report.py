from uniego.report import recognition_table, write_report


def test_report_groups_models(tmp_path):
    import json
    rows = {"uniego": 60.0, "baseline_ego": 40.0, "merge_model": 50.0, "proxy_exo_skl": 45.5}
    paths = []
    for name, top1 in rows.items():
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps({"model": name, "top1": top1, "top5": 90.0, "n": 54, "views": "1x3"}))
        paths.append(str(p))
    out = write_report("demo", paths, tmp_path / "report.md")
    text = out.read_text()
    assert "| uniego | 60.00 | 90.00 | 54 | 1x3 |" in text and "| proxy_exo_skl | 45.50 |" in text
    order = [text.index(s) for s in ("**UNIEGO**", "**Baselines**", "**Merged", "**Level-I proxies**")]
    assert order == sorted(order)
    assert recognition_table([]).count("\n") == 1
