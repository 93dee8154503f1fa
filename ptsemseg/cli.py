"""Entry points behind train.py, validate_seg.py and test_depth.py.

User mistakes surface as one line on stderr and exit code 2; nothing is written before the config, data
and checkpoint have been checked.
"""
import argparse
import json
import math
import os
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
        if not getattr(err, "silent", False):  # another process of a distributed run prints it
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
    from ptsemseg.encoders import ENCODERS
    from ptsemseg.loaders import DATASETS
    from ptsemseg.losses import LOSSES
    from ptsemseg.metrics import METRICS
    from ptsemseg.models import MODELS
    from ptsemseg.optimizers import OPTIMIZERS
    from ptsemseg.protocols import PROTOCOLS
    from ptsemseg.schedulers import SCHEDULERS
    from ptsemseg.tasks import TASKS

    for title, registry in (("architectures", MODELS), ("encoders", ENCODERS), ("tasks", TASKS),
                            ("datasets", DATASETS), ("losses", LOSSES),
                            ("optimizers", OPTIMIZERS), ("lr schedules", SCHEDULERS),
                            ("augmentations", AUGMENTATIONS), ("metrics", METRICS),
                            ("evaluation protocols (testing.protocol)", PROTOCOLS)):
        print(f"{title}: {', '.join(registry.names())}")


def train_main(argv=None):
    parser = config_parser("Train a segmentation or depth model from a YAML config.")
    parser.add_argument("--list", action="store_true", help="print every registered component and exit")
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=SPEC",
                        help="one run per value: KEY=start:stop:count or KEY=[v1, v2]; repeat for every "
                             "combination (e.g. task.scene=0.004:0.01:5)")
    args = parser.parse_args(argv)
    if args.list:
        list_components()
        return
    if not args.config:
        parser.error("--config is required")
    from ptsemseg.distributed import PeerFailure, close_processes, init_processes, lost_peer

    processes = init_processes()  # one process, or one of those torchrun / srun started
    try:
        try:
            train_processes(args, processes)
        except Exception as err:
            if processes.enabled and lost_peer(err):  # its own message is above; this one only says why it ends
                raise PtsemsegError(f"{'rank 0 ' if processes.is_main else ''}stopped: another process of the run "
                                    f"ended ({type(err).__name__})") from None
            raise
    except PtsemsegError as err:
        close_processes(processes)
        if processes.is_main or getattr(err, "silent", False):
            raise
        # Rank 0's progress bar holds the shared terminal's current line: this message takes a line of its own.
        print(f"\nerror: rank {processes.rank}: {error_message(err)}", file=sys.stderr)
        raise PeerFailure() from None
    close_processes(processes)


def train_processes(args, processes):
    """Train in this process, alone or as one of `processes`: every rank checks the config and builds the run, and
    when any fails rank 0 prints its one line (ptsemseg.distributed.Processes.agree)."""
    from ptsemseg.config import load_config
    from ptsemseg.trainer import Trainer, default_run_dir

    if args.sweep:
        processes.raise_first("--sweep trains its runs one after another: launch it as one process (no torchrun)"
                              if processes.enabled else None)
        sweep_main(args)
        return
    if not processes.is_main:
        warnings.simplefilter("ignore")  # rank 0 alone reports
    cfg = processes.agree(lambda: load_config(args.config, args.opts))
    if processes.enabled and not (cfg["training"]["out_dir"] or cfg["training"]["resume"]):
        cfg["training"]["out_dir"] = processes.broadcast(default_run_dir(args.config))
    trainer = processes.agree(lambda: Trainer(cfg, args.config, processes))
    if processes.is_main:
        print(f"run directory: {trainer.run_dir}")
    trainer.run()


def sweep_main(args):
    """Train once per combination of the `--sweep` values; tables of the final scores beside the runs."""
    from ptsemseg.config import load_config
    from ptsemseg.sweep import plan_sweep, run_name, write_tables
    from ptsemseg.trainer import Trainer, default_run_dir

    base = load_config(args.config, args.opts)
    sweep_dir = base["training"]["out_dir"] or default_run_dir(args.config, prefix="sweep-")
    runs = plan_sweep(args.config, args.opts, args.sweep, sweep_dir)
    for _, cfg in runs:
        if os.path.exists(os.path.join(cfg["training"]["out_dir"], "last.pt")):
            raise PtsemsegError(f"run directory {cfg['training']['out_dir']} already holds a run: give the sweep "
                                "another training.out_dir")
    print(f"sweep directory: {sweep_dir} ({len(runs)} runs)")
    rows = []
    for assignment, cfg in runs:
        print(f"run {len(rows) + 1}/{len(runs)}: {run_name(assignment)}")
        trainer = Trainer(cfg, args.config)
        scores = trainer.run()
        rows.append({**dict(assignment), **scores, "run_dir": trainer.run_dir})
        write_tables(sweep_dir, rows)
    print(f"tables: {os.path.join(sweep_dir, 'sweep.md')}, {os.path.join(sweep_dir, 'sweep.csv')}")


def format_table(scores, class_names=None):
    """Metric table (and per-class rows of list-valued scores, e.g. `seg/per_class_iou`) as text.

    `class_names` maps a task name to its class names.
    """
    lines = [f"{name:>20s}  {value:.4f}" for name, value in scores.items() if isinstance(value, float)]
    for key, values in scores.items():
        if not isinstance(values, list):
            continue
        task = key.partition("/")[0]
        names = (class_names or {}).get(task) or [str(i) for i in range(len(values))]
        lines.append(f"{key}:")
        lines += [f"{name:>20s}  {'  n/a' if math.isnan(v) else f'{v:.4f}'}" for name, v in zip(names, values)]
    return "\n".join(lines)


def print_results_tables(scores, tasks, testing):
    """Each task's table in its field's usual form (depth: the seed projects' 7 metrics), under its protocol."""
    protocol = f" ({testing['protocol']})" if testing.get("protocol") else ""
    for name, task in tasks.items():
        table = task.results_table({key.partition("/")[2]: value for key, value in scores.items()
                                    if key.partition("/")[0] == name}, testing)
        if table:
            print(f"\n{name}{protocol}:\n{table}")


def evaluate_main(description, split, argv=None):
    """Evaluate a checkpoint on every task of its config over `data.<split>_split`; print (and save) the metrics.

    Tasks scored by a confusion matrix (seg, scene) also get it as CSV and PNG in `--out`, by default the
    checkpoint's folder.
    """
    parser = config_parser(description)
    parser.add_argument("--split", choices=("train", "val", "test"), default=split,
                        help=f"which data.<split>_split to evaluate (default: {split})")
    parser.add_argument("--model_path", help="checkpoint (default: testing.trained_model)")
    parser.add_argument("--out-json", dest="out_json", help="also write the metrics to this JSON file")
    parser.add_argument("--out", help="folder for the confusion matrices (default: the checkpoint's folder)")
    parser.add_argument("--measure-time", dest="measure_time", action="store_true",
                        help="print the inference time per image (data loading and scoring excluded)")
    parser.add_argument("--weights", choices=("ema", "model"),
                        help="the checkpoint's EMA weights (training.ema; the default when it has them) or the "
                             "trained model's")
    args = parser.parse_args(argv)
    if not args.config:
        parser.error("--config is required")
    from ptsemseg.checkpoint import check_compatible, load_checkpoint, load_model_state, weights_entry, write_atomic
    from ptsemseg.config import load_config
    from ptsemseg.rundir import check_output_file, check_writable_dir, json_safe
    from ptsemseg.build import build_model, eval_loader, sample_keys
    from ptsemseg.device import resolve_device, resolve_speed_modes
    from ptsemseg.evaluation import InferenceTimer, accumulate, evaluation_dataset, save_confusion, scores_of
    from ptsemseg.tasks import TaskSet

    if args.out_json:
        check_output_file(args.out_json, "--out-json")
    cfg = load_config(args.config, args.opts)
    split_key = f"{args.split}_split"
    model_path = args.model_path or cfg["testing"]["trained_model"]
    state = load_checkpoint(model_path)
    device = resolve_device(cfg["training"]["device"])
    resolve_speed_modes(cfg["training"], device, cfg["model"]["arch"])
    dataset = evaluation_dataset(cfg, cfg["data"][split_key], sample_keys(cfg))
    tasks = TaskSet(cfg["task"], dataset, cfg["training"]["best_metric"])
    check_compatible(state, model_path, cfg["model"]["arch"], tasks.meta())
    entry = weights_entry(state, model_path, args.weights)
    out_dir = args.out or os.path.dirname(os.path.abspath(model_path))
    with_confusion = [name for name, task in tasks.items() if "confusion" in task.metrics().state()]
    if with_confusion:
        check_writable_dir(out_dir, "--out")
    model = build_model(cfg, tasks.heads(), device)
    load_model_state(model, state, model_path, entry=entry)
    timer = InferenceTimer(device) if args.measure_time else None
    metrics, _, _ = accumulate(model, eval_loader(cfg, dataset, device), tasks, cfg, device, progress=True,
                               timer=timer)
    scores = scores_of(metrics)
    print(f"{cfg['data']['dataset']} {cfg['data'][split_key]} ({len(dataset)} images), {model_path}"
          + (" (EMA weights)" if entry == "ema_state" else ""))
    print(format_table(scores, {name: task.class_names for name, task in tasks.items()}))
    print_results_tables(scores, tasks, cfg["testing"])
    if with_confusion:
        os.makedirs(out_dir, exist_ok=True)
    for name in with_confusion:
        stem = os.path.join(out_dir, f"confusion_{name}_{args.split}")
        title = f"{name} on {cfg['data']['dataset']} {cfg['data'][split_key]} (rows normalised)"
        paths = save_confusion(metrics[name].state()["confusion"], tasks.tasks[name].class_names, stem, title)
        print(f"confusion matrix of {name}: {', '.join(paths)}")
    if timer:
        print(timer.summary())
    if args.out_json:
        text = json.dumps(json_safe(scores), indent=2, allow_nan=False)
        write_atomic(args.out_json, lambda handle: handle.write(text.encode("utf-8")))
