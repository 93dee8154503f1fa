"""The evaluation loop: a model over a loader, every task of a run scored."""
import torch
from tqdm import tqdm

from ptsemseg.device import autocast, to_device
from ptsemseg.models import model_inputs


@torch.no_grad()
def evaluate(model, loader, tasks, cfg, device, progress=False):
    """Run `model` over `loader` and score every task of the TaskSet `tasks`.

    Returns (scores named `<task>/<metric>`, the last batch, the last predictions by task name).
    """
    was_training = model.training
    model.eval()
    metrics = {name: task.metrics(device, cfg["testing"]) for name, task in tasks.items()}
    batch = predictions = None
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        batch = to_device(batch, device, cfg["training"]["channels_last"])
        with autocast(cfg, device):
            outputs = model(*model_inputs(model, batch))
        predictions = {name: task.predict(outputs[name].float()) for name, task in tasks.items()}
        for name, task in tasks.items():
            metrics[name].update(predictions[name], batch[task.target_key])
    model.train(was_training)
    scores = {f"{name}/{key}": value for name, metric in metrics.items() for key, value in metric.compute().items()}
    return scores, batch, predictions
