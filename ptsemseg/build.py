"""Building what a config describes: seeds, the sample keys a run needs, datasets, loaders and the model.

Shared by the trainer and the evaluation command so both read a config the same way.
"""
import random

import numpy as np
import torch

from ptsemseg.augmentations import get_composed_augmentations
from ptsemseg.loaders import get_loader
from ptsemseg.loaders.base import collate_by_size
from ptsemseg.models import get_model, model_input_keys
from ptsemseg.tasks import TASKS, parse_task_spec

DATASET_KEYS = ("dataset", "path", "train_split", "val_split", "test_split", "img_rows", "img_cols", "img_norm")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sample_keys(cfg):
    """The sample keys a run needs: the model's inputs, then the tasks' targets."""
    targets = [TASKS.get(name).target_key for name in parse_task_spec(cfg["task"])]
    return tuple(dict.fromkeys([*model_input_keys(cfg["model"]), *targets]))


def build_dataset(cfg, split, keys, augment=False):
    """The dataset of `data.<split>` giving `keys`, with the config's size, normalisation, options and
    augmentations: all of them for training (`augment`), else only those that encode the input (`normalize`)."""
    data = cfg["data"]
    img_size = None if data["img_rows"] == "same" else (data["img_rows"], data["img_cols"])
    augmentations = get_composed_augmentations(cfg["training"]["augmentations"], evaluation=not augment)
    options = {key: value for key, value in data.items() if key not in DATASET_KEYS}
    return get_loader(data["dataset"])(data["path"], split, keys=keys, img_size=img_size,
                                       augmentations=augmentations, img_norm=data["img_norm"], **options)


def build_model(cfg, heads, device):
    """The model of `model.*` with `heads` (HeadSpecs) on `device`, in channels_last when the run asks for it."""
    model = get_model(cfg["model"], heads).to(device)
    if cfg["training"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model


def eval_loader(cfg, dataset, device):
    """A deterministic loader over an evaluation split; each item is a list of batches, one per frame size
    (`collate_by_size`). `training.val_batch_size` images per item, default the training batch size, or one
    when the network runs at each frame's native size (`data.img_rows: same`)."""
    training = cfg["training"]
    batch_size = training["val_batch_size"] or (training["batch_size"] if cfg["data"]["img_rows"] != "same" else 1)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=training["n_workers"],
        collate_fn=collate_by_size, pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
