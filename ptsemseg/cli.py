"""Entry points behind train.py, validate_seg.py and test_depth.py.

User mistakes surface as one line on stderr and exit code 2; nothing is written before the config, data
and checkpoint have been checked.
"""
import argparse
import json
import math
import sys
import warnings

from tqdm import tqdm

from ptsemseg.errors import PtsemsegError


def _warning_line(message, category, filename, lineno, file=None, line=None):
    tqdm.write(f"warning: {message}", file=sys.stderr)


def _close_progress_bars():
    """Finish the progress bars still drawn, so that a message starts on a line of its own."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def error_message(err):
    """The one-line message of `err`.

    A DataLoader worker's exception comes back re-raised as the same class but with the worker's whole
    traceback as its text, ending in `module.Class: message`; that last line's message is the original one.
    """
    text = str(err)
    if "\nOriginal Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[-1]
    return text


def guarded(main):
    """Run `main()` turning PtsemsegError (and Ctrl-C) into a one-line message and a non-zero exit."""
    warnings.showwarning = _warning_line
    try:
        main()
    except PtsemsegError as err:
        _close_progress_bars()
        print(f"error: {error_message(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _close_progress_bars()
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


def config_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of config keys, e.g. training.batch_size=4 model.arch=segnet")
    return parser


def list_components():
    """Every registered name, by kind."""
    from ptsemseg.augmentations import AUGMENTATIONS
    from ptsemseg.loaders import DATASETS
    from ptsemseg.losses import LOSSES
    from ptsemseg.metrics import METRICS
    from ptsemseg.models import MODELS
    from ptsemseg.optimizers import OPTIMIZERS
    from ptsemseg.schedulers import SCHEDULERS

    for title, registry in (("architectures", MODELS), ("datasets", DATASETS), ("losses", LOSSES),
                            ("optimizers", OPTIMIZERS), ("lr schedules", SCHEDULERS),
                            ("augmentations", AUGMENTATIONS), ("metrics", METRICS)):
        print(f"{title}: {', '.join(registry.names())}")


def train_main(argv=None):
    parser = config_parser("Train a segmentation or depth model from a YAML config.")
    parser.add_argument("--list", action="store_true", help="print every registered component and exit")
    args = parser.parse_args(argv)
    if args.list:
        list_components()
        return
    if not args.config:
        parser.error("--config is required")
    from ptsemseg.config import load_config
    from ptsemseg.trainer import Trainer

    cfg = load_config(args.config, args.opts)
    trainer = Trainer(cfg, args.config)
    print(f"run directory: {trainer.run_dir}")
    trainer.run()


def format_table(scores, class_names=None):
    """Metric table (and per-class IoU rows when present) as text."""
    lines = [f"{name:>14s}  {value:.4f}" for name, value in scores.items() if isinstance(value, float)]
    per_class = scores.get("per_class_iou")
    if per_class:
        names = class_names or [str(i) for i in range(len(per_class))]
        lines.append("per-class IoU:")
        lines += [f"{name:>14s}  {'  n/a' if math.isnan(iou) else f'{iou:.4f}'}" for name, iou in zip(names, per_class)]
    return "\n".join(lines)


def evaluate_main(description, split_key, argv=None):
    """Evaluate a checkpoint on `data.<split_key>` and print (and optionally save) the metrics."""
    parser = config_parser(description)
    parser.add_argument("--model_path", help="checkpoint (default: testing.trained_model)")
    parser.add_argument("--out-json", dest="out_json", help="also write the metrics to this JSON file")
    args = parser.parse_args(argv)
    if not args.config:
        parser.error("--config is required")
    from ptsemseg.checkpoint import check_compatible, load_checkpoint, load_model_state, write_atomic
    from ptsemseg.config import load_config
    from ptsemseg.rundir import check_output_file, json_safe
    from ptsemseg.runtime import (build_dataset, build_model, eval_loader, evaluate, n_classes_of, resolve_device,
                                  resolve_speed_modes)
    from ptsemseg.tasks import get_task

    if args.out_json:
        check_output_file(args.out_json, "--out-json")
    cfg = load_config(args.config, args.opts)
    task = get_task(cfg["task"])
    model_path = args.model_path or cfg["testing"]["trained_model"]
    state = load_checkpoint(model_path)
    device = resolve_device(cfg["training"]["device"])
    resolve_speed_modes(cfg["training"], device)
    dataset = build_dataset(cfg, cfg["data"][split_key])
    n_classes = n_classes_of(dataset)
    check_compatible(state, model_path, cfg["model"]["arch"], task.name, task.out_channels(n_classes))
    model = build_model(cfg, n_classes, device)
    load_model_state(model, state, model_path)
    metrics = task.metrics(n_classes, device, cfg["testing"])
    scores, _, _ = evaluate(model, eval_loader(cfg, dataset, device), task, metrics, cfg, device, progress=True)
    print(f"{cfg['data']['dataset']} {cfg['data'][split_key]} ({len(dataset)} images), {model_path}")
    print(format_table(scores, getattr(dataset, "class_names", None)))
    if args.out_json:
        text = json.dumps(json_safe(scores), indent=2, allow_nan=False)
        write_atomic(args.out_json, lambda handle: handle.write(text.encode("utf-8")))
