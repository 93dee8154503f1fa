"""benchmark.py: configs trained when missing, every run evaluated, the seed README's tables written.

The end-to-end test trains all 8 seed architectures for both tasks on `synthetic` for one iteration and checks the
tables cell by cell against what each run's own validation wrote to metrics.jsonl (same checkpoint, same split).
"""
import csv
import json
import os
import re

import cv2
import pytest
import torch
import yaml

from ptsemseg.benchmark_tables import (Row, Table, arch_title, build_tables, csv_table, main, markdown_table,
                                       plan_runs, read_list_file)
from ptsemseg.cli import guarded
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from tests.conftest import REPO
from tests.miniature_datasets import make_cityscapes, make_kitti_semantics

SEED_LIST = os.path.join(REPO, "configs", "benchmark", "seed_synthetic.txt")
SEED_ARCHS = ("fcn8s", "segnet", "frrnA", "frrnB", "deeplab", "pspnet", "fcrn", "dispnet")
SEED_TITLES = ["FCN", "SegNet", "FRRN A", "FRRN B", "DeepLab v2", "PSPNet", "FCRN", "DispNet"]
SEED_METRIC_ROWS = {"seg": {"mIoU": "mean_iou"},
                    "depth": {"rel": "abs_rel", "sq_rel": "sq_rel", "rms": "rmse", "log_rms": "rmse_log",
                              "delta<1.25": "delta1", "delta<1.25^2": "delta2", "delta<1.25^3": "delta3"}}

# One iteration at 64×64 (at 32×32 the deepest BatchNorm sees 2 values and FCRN's first step diverges), 2 items
# per split; SGD keeps no optimizer state, so FCN-8s' checkpoints are its weights alone (1.6 GB less to write).
TINY_BUDGET = ["data.img_rows=64", "data.img_cols=64", "data.length=2", "training.train_iters=1",
               "training.val_interval=1", "training.print_interval=1", "training.batch_size=2",
               "training.n_workers=0", "training.device=cpu", "training.optimizer.name=sgd"]


def parse_markdown(text):
    """{title: (header cells, rule line, {row label: cells})} of every table in benchmark.md."""
    tables = {}
    for title, body in re.findall(r"^(.+):\n\n((?:\|.*\n)+)", text, flags=re.M):
        lines = body.splitlines()
        split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
        tables[title] = (split[0], lines[1], {cells[0]: cells[1:] for cells in split[2:]})
    return tables


def read_csv(path):
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], {row[0]: row[1:] for row in rows[1:]}


def csv_by_column(path):
    """{column: {row label: cell}} of a table's CSV, whatever the order of its columns."""
    header, rows = read_csv(path)
    return {column: {label: cells[i] for label, cells in rows.items()} for i, column in enumerate(header[1:])}


def last_record(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as handle:
        return json.loads(handle.read().splitlines()[-1])


def test_seed_benchmark_on_synthetic_end_to_end(tmp_path):
    """All 8 seed architectures × {seg, depth}: trained, evaluated, tabulated in the seed's format; then the same
    tables again from the directory of finished runs, without training."""
    list_file = tmp_path / "seed_tiny.txt"
    lines = []
    for task in ("seg", "depth"):
        for arch in SEED_ARCHS:
            small = " model.backbone=resnet18" if arch in ("deeplab", "pspnet", "fcrn") else ""
            lines.append(os.path.join(REPO, "configs", "synthetic", f"{arch}_{task}.yaml") + small)
    list_file.write_text("# the seed benchmark with ResNet-18 backbones\n" + "\n".join(lines) + "\n")
    out = tmp_path / "bench"
    main([str(list_file), "--train", "--out", str(out), "--split", "val", "--opts", *TINY_BUDGET])

    tables = parse_markdown((out / "benchmark.md").read_text())
    titles = {"seg": "Segmentation on synthetic val set", "depth": "Monocular depth estimation on synthetic val set"}
    assert sorted(tables) == sorted(titles.values())
    for task, title in titles.items():
        header, rule, rows = tables[title]
        assert header == ["", *SEED_TITLES]
        assert re.fullmatch(r"\|-+\|(:-+:\|){8}", rule), rule
        assert list(rows) == ["resolution", "batch size", *SEED_METRIC_ROWS[task]]
        assert rows["resolution"] == ["64*64"] * 8 and rows["batch size"] == ["2"] * 8
        csv_header, csv_rows = read_csv(out / f"synthetic_{task}_val.csv")
        assert csv_header == header and list(csv_rows) == list(rows)
        for column, arch in enumerate(SEED_ARCHS):
            record = last_record(out / "runs" / "synthetic" / f"{arch}_{task}")
            assert record["iteration"] == 1
            for label, metric in SEED_METRIC_ROWS[task].items():
                expected = record[f"{task}/{metric}"]
                if task == "seg":
                    assert rows[label][column] == f"{100 * expected:.1f}%", (arch, label)
                    assert float(csv_rows[label][column]) == pytest.approx(100 * expected, rel=1e-9)
                else:
                    assert rows[label][column] == f"{expected:.3f}", (arch, label)
                    assert float(csv_rows[label][column]) == pytest.approx(expected, rel=1e-9)
        chart = cv2.imread(str(out / f"synthetic_{task}_val.png"))
        assert chart is not None and chart.shape[0] > 200 and chart.shape[1] > 300

    checkpoints = sorted((out / "runs").rglob("*.pt"))
    assert len(checkpoints) == 32
    stamps = [path.stat().st_mtime_ns for path in checkpoints]
    again = tmp_path / "again"
    main([str(out / "runs"), "--out", str(again), "--split", "val", "--opts", *TINY_BUDGET])
    for task in ("seg", "depth"):
        assert csv_by_column(again / f"synthetic_{task}_val.csv") == csv_by_column(out / f"synthetic_{task}_val.csv")
    assert [path.stat().st_mtime_ns for path in checkpoints] == stamps


@pytest.mark.slow
def test_repo_seed_list_at_full_size(tmp_path):
    """The README's command (configs/benchmark/seed_synthetic.txt, full-size models) with a tiny budget."""
    main([SEED_LIST, "--train", "--out", str(tmp_path), "--opts", *TINY_BUDGET])
    for task in ("seg", "depth"):
        header, rows = read_csv(tmp_path / f"synthetic_{task}_test.csv")
        assert header == ["", *SEED_TITLES]
        assert all(value for label in SEED_METRIC_ROWS[task] for value in rows[label])


def test_repo_seed_list_plans_all_eight_architectures_for_both_tasks(tmp_path):
    runs = plan_runs([SEED_LIST], [], str(tmp_path), train=True)
    assert [run.name for run in runs] == [f"synthetic/{arch}_{task}"
                                          for task in ("seg", "depth") for arch in SEED_ARCHS]
    assert [arch_title(run.cfg["model"]) for run in runs] == SEED_TITLES * 2
    assert all(run.resume == "new" for run in runs)
    with pytest.raises(PtsemsegError, match=r"not trained yet: synthetic/fcn8s_seg, .*synthetic/dispnet_depth "
                                            r"\(pass --train"):
        plan_runs([SEED_LIST], [], str(tmp_path), train=False)
    assert os.listdir(tmp_path) == []


def test_repo_cityscapes_kitti_list_plans_the_ready_configs(tmp_path):
    runs = plan_runs([os.path.join(REPO, "configs", "benchmark", "seed_cityscapes_kitti.txt")], [],
                     str(tmp_path), train=True)
    assert [run.name for run in runs] == ["cityscapes/deeplab_seg", "kitti/deeplab_seg", "cityscapes/deeplab_depth",
                                          "kitti/deeplab_depth", "kitti/fcrn_depth", "kitti/fcrn_depth_eigen"]
    assert [run.run_dir for run in runs] == [os.path.join(str(tmp_path), run.name) for run in runs]


def test_ready_cityscapes_and_kitti_configs_on_miniature_official_layouts(tmp_path):
    """The README's way to run the real datasets: their ready configs in a list file with per-line overrides (data
    roots; offline weights and a small backbone here), tables scored like each run's own validation."""
    cityscapes, kitti = make_cityscapes(tmp_path / "cityscapes"), make_kitti_semantics(tmp_path / "data_semantics")
    offline = "model.pretrained=none model.backbone=resnet18 'training.augmentations={_delete_: true, hflip: 0.5}'"
    configs = os.path.join(REPO, "configs")
    list_file = tmp_path / "real.txt"
    list_file.write_text(
        f"{configs}/cityscapes/deeplab_seg.yaml data.path={cityscapes} {offline}\n"
        f"{configs}/kitti/deeplab_seg.yaml data.path={kitti} data.img_rows=8 data.img_cols=12 {offline}\n"
        f"{configs}/cityscapes/deeplab_depth.yaml data.path={cityscapes} data.test_split=val data.img_rows=16 "
        f"data.img_cols=32 {offline}\n")
    out = tmp_path / "bench"
    main([str(list_file), "--train", "--out", str(out), "--opts", "training.train_iters=2", "training.val_interval=2",
          "training.batch_size=2", "training.n_workers=0", "training.device=cpu"])
    tables = parse_markdown((out / "benchmark.md").read_text())
    expected = {"Segmentation on cityscapes val set": ("cityscapes/deeplab_seg", "seg", "native"),
                "Segmentation on kitti val set": ("kitti/deeplab_seg", "seg", "8*12"),
                "Monocular depth estimation on cityscapes val set": ("cityscapes/deeplab_depth", "depth", "16*32")}
    assert sorted(tables) == sorted(expected)
    for title, (name, task, size) in expected.items():
        header, _, rows = tables[title]
        assert header == ["", "DeepLab v2"] and rows["resolution"] == [size] and rows["batch size"] == ["2"]
        record = last_record(out / "runs" / name)
        assert record["iteration"] == 2
        for label, metric in SEED_METRIC_ROWS[task].items():
            value = record[f"{task}/{metric}"]
            assert rows[label] == [f"{100 * value:.1f}%" if task == "seg" else f"{value:.3f}"], (name, label)


def test_resumes_a_stopped_run_keeps_a_finished_one_and_evaluates_a_trained_model(write_config, tmp_path):
    config = write_config("small.yaml", training={"train_iters": 2, "val_interval": 2})
    out = tmp_path / "bench"
    run_dir = out / "runs" / "synthetic" / "small"
    main([config, "--train", "--out", str(out)])
    assert last_record(run_dir)["iteration"] == 2

    main([config, "--train", "--out", str(out), "--opts", "training.train_iters=4"])
    assert [json.loads(line)["iteration"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert torch.load(run_dir / "last.pt", weights_only=True)["iteration"] == 4

    stamp = (run_dir / "last.pt").stat().st_mtime_ns
    trained = write_config("trained.yaml", testing={"trained_model": str(run_dir / "last.pt")})
    main([config, trained, "--out", str(out), "--checkpoint", "last", "--opts", "training.train_iters=4"])
    assert (run_dir / "last.pt").stat().st_mtime_ns == stamp
    assert not (out / "runs" / "synthetic" / "trained").exists()
    header, rows = read_csv(out / "synthetic_seg_test.csv")
    assert header == ["", "DeepLab v2 (synthetic/small)", "DeepLab v2 (synthetic/trained)"]
    assert rows["mIoU"][0] == rows["mIoU"][1]  # one checkpoint, one test split


def test_tables_split_by_task_and_evaluation_options(write_config):
    runs = plan_runs([write_config("joint.yaml", task={"seg": 1.0, "depth": 0.5}),
                      write_config("garg.yaml", task="depth", testing={"crop": "garg"}, model={"arch": "pspnet"}),
                      write_config("alike.yaml", task="depth", model={"arch": "pspnet"})], [], "unused", train=True)
    scores = {"synthetic/joint": {"seg/mean_iou": 0.5, "depth/abs_rel": 0.25, "depth/delta1": None},
              "synthetic/garg": {"depth/abs_rel": 0.125}, "synthetic/alike": {"depth/abs_rel": 0.5}}
    tables = build_tables(runs, scores, "test_split")
    assert [(table.title, table.slug, table.columns) for table in tables] == [
        ("Monocular depth estimation on synthetic test set (testing.crop none)", "synthetic_depth_test",
         ["DeepLab v2", "PSPNet"]),
        ("Segmentation on synthetic test set", "synthetic_seg_test", ["DeepLab v2"]),
        ("Monocular depth estimation on synthetic test set (garg crop)", "synthetic_depth_test_2", ["PSPNet"])]
    assert tables[0].values["abs_rel"] == [0.25, 0.5] and tables[0].values["delta1"] == [None, None]
    assert re.search(r"^\| delta<1\.25 +\| +n/a +\| +n/a +\|$", markdown_table(tables[0]), flags=re.M)


def test_markdown_and_csv_cells():
    table = Table("cityscapes", "seg", "val", {}, columns=["FCN", "SegNet"], setup={"batch size": ["2", "4"]},
                  values={"mean_iou": [0.672, None]})
    assert markdown_table(table) == "\n".join([
        "|            |   FCN   |  SegNet  |",
        "|------------|:-------:|:--------:|",
        "| batch size |    2    |    4     |",
        "| mIoU       |  67.2%  |   n/a    |"])
    header, *rows = list(csv.reader(csv_table(table).splitlines()))
    assert header == ["", "FCN", "SegNet"] and rows[0] == ["batch size", "2", "4"]
    assert rows[1][0] == "mIoU" and float(rows[1][1]) == pytest.approx(67.2) and rows[1][2] == ""
    assert Row("rel", "abs_rel").format(0.1056) == "0.106"


def test_list_file_paths_comments_and_override_order(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "a.txt").write_text("# comment\n../x.yaml data.img_rows=40 'data.length={train: 4}'  # why\n\n")
    assert read_list_file(str(folder / "a.txt")) == [(str(folder / "../x.yaml"),
                                                      ["data.img_rows=40", "data.length={train: 4}"])]
    base = os.path.join(REPO, "configs", "_base_", "synthetic_seg.yaml")
    (tmp_path / "x.yaml").write_text(yaml.safe_dump({"_base_": base, "model": {"arch": "segnet"}}))
    (run,) = plan_runs([str(folder / "a.txt")], ["data.img_rows=48"], str(tmp_path / "runs"), train=True)
    assert run.cfg["data"]["img_rows"] == 48 and run.cfg["data"]["length"] == {"train": 4}
    assert run.overrides == ["data.img_rows=40", "data.length={train: 4}", "data.img_rows=48"]
    assert load_config(run.config_path, run.overrides)["data"]["img_rows"] == 48


@pytest.mark.parametrize("make, message", [
    (lambda tmp: [str(tmp / "missing.yaml")], "benchmark source not found"),
    (lambda tmp: [str(tmp)], "no run directory"),
    (lambda tmp: [_write(tmp / "l.txt", "a.yaml b.yaml\n")], "expected a path then KEY=VALUE"),
    (lambda tmp: [_write(tmp / "l.txt", "'unclosed\n")], "No closing quotation"),
    (lambda tmp: [_write_bytes(tmp / "model.pt", b"PK\x03\x04\xff\xfe")], "is not UTF-8 text"),
])
def test_bad_sources_fail_in_one_line(tmp_path, make, message):
    with pytest.raises(PtsemsegError, match=message):
        plan_runs(make(tmp_path), [], str(tmp_path / "runs"), train=True)


def _write(path, text):
    path.write_text(text)
    return str(path)


def _write_bytes(path, data):
    path.write_bytes(data)
    return str(path)


def test_two_configs_sharing_a_run_directory_are_refused(write_config, tmp_path):
    first = write_config("same.yaml")
    other = tmp_path / "other"
    other.mkdir()
    second = other / "same.yaml"
    second.write_text(open(first).read())
    with pytest.raises(PtsemsegError, match="share the run name synthetic/same"):
        plan_runs([first, str(second)], [], str(tmp_path / "runs"), train=True)


def test_command_line_error_is_one_line_and_writes_nothing(write_config, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        guarded(lambda: main([write_config("small.yaml"), "--out", str(out)]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: not trained yet: synthetic/small (pass --train to train them into {out / 'runs'})"]
    assert not out.exists()
