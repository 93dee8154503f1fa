"""Losses, optimizers, LR schedules and metrics against hand-computed cases.

Every test that checks components is parametrized by a registry's names, and each name needs an entry in
the case tables below: a component registered without a test case fails the suite.
"""
import copy
import io
import math

import pytest
import torch

from ptsemseg.errors import PtsemsegError
from ptsemseg.losses import LOSSES, get_loss
from ptsemseg.metrics import METRICS
from ptsemseg.metrics.depth import crop_mask
from ptsemseg.optimizers import OPTIMIZERS, get_optimizer
from ptsemseg.schedulers import SCHEDULERS, get_scheduler

LN = math.log
CONFIDENT = [LN(3), 0.0]  # softmax (3/4, 1/4): CE ln(4/3) for label 0, ln 4 for label 1
UNSURE = [0.0, 0.0]  # CE ln 2 for either label


def logits(*pixels):
    """1×C×1×W logits from one list of class scores per pixel."""
    return torch.tensor(pixels).T.reshape(1, len(pixels[0]), 1, len(pixels)).requires_grad_()


def labels(*values):
    return torch.tensor([[values]], dtype=torch.int64)


def depth(rows, grad=False):
    """1×1×H×W depth map from nested lists."""
    return torch.tensor([[rows]], dtype=torch.float32).requires_grad_(grad)


# --- Losses ----------------------------------------------------------------------------------------------
# Shared depth case: 3 valid pixels (2, 4, 1) with residuals 3, 2, 0; the invalid pixel's residual 5 must not count.
DEPTH_TARGET = [[2.0, 0.0], [4.0, 1.0]]
DEPTH_PRED = [[5.0, 5.0], [2.0, 1.0]]
# 3×3 prediction i·j + i² + 1: ∂yy = 2, ∂xy = ∂yx = 1, ∂xx = 0, so the smoothness term is (2 + 1 + 1)/1000.
SMOOTH_MAP = [[i * j + i * i + 1.0 for j in range(3)] for i in range(3)]
# An auxiliary 1×2 output [2, 6] resized bilinearly to 1×4 is [2, 3, 5, 6]: L1 against 3s is (1 + 0 + 2 + 3)/4.
AUX_DEPTH = [[2.0, 6.0]]
AUX_TARGET = [[3.0, 3.0, 3.0, 3.0]]


def ce_cases():
    main = (LN(4 / 3) + LN(4)) / 2
    return [
        ("mean over labelled pixels", {}, logits(CONFIDENT, CONFIDENT, UNSURE), labels(0, 1, 255), main),
        ("class weights", {"weight": [1.0, 3.0]}, logits(CONFIDENT, CONFIDENT, UNSURE), labels(0, 1, 255),
         (LN(4 / 3) + 3 * LN(4)) / 4),
        ("size_average false sums", {"size_average": False}, logits(CONFIDENT, CONFIDENT, UNSURE),
         labels(0, 1, 255), LN(4 / 3) + LN(4)),
        ("aux output 1×1 upsampled, weight 0.4", {}, [logits(CONFIDENT, CONFIDENT, UNSURE), logits(UNSURE)],
         labels(0, 1, 255), main + 0.4 * LN(2)),
        ("scale_weight", {"scale_weight": [1.0, 0.5]}, [logits(CONFIDENT, CONFIDENT, UNSURE), logits(UNSURE)],
         labels(0, 1, 255), main + 0.5 * LN(2)),
        ("every pixel ignored", {}, logits(CONFIDENT, UNSURE), labels(255, 255), 0.0),
    ]


def bootstrapped_cases():
    two_images = torch.cat([logits(CONFIDENT, CONFIDENT, UNSURE), logits(CONFIDENT, CONFIDENT, CONFIDENT)])
    two_images = two_images.detach().requires_grad_()
    two_targets = torch.cat([labels(0, 1, 255), labels(0, 0, 0)])
    return [
        ("top-1 per image, batch mean", {"K": 1}, two_images, two_targets, (LN(4) + LN(4 / 3)) / 2),
        ("top-2", {"K": 2}, logits(CONFIDENT, CONFIDENT, UNSURE), labels(0, 1, 255), (LN(4) + LN(4 / 3)) / 2),
        ("K above the pixel count", {"K": 10}, logits(CONFIDENT, CONFIDENT, UNSURE), labels(0, 1, 255),
         (LN(4) + LN(4 / 3)) / 3),
        ("size_average false sums images", {"K": 1, "size_average": False}, two_images, two_targets,
         LN(4) + LN(4 / 3)),
        ("aux output", {"K": 1}, [logits(CONFIDENT, CONFIDENT, UNSURE), logits(UNSURE)], labels(0, 1, 255),
         LN(4) + 0.4 * LN(2)),
        ("every pixel ignored", {"K": 2}, logits(CONFIDENT, UNSURE), labels(255, 255), 0.0),
    ]


def depth_cases(main_value, extra=()):
    """Cases every depth loss shares; the second image of the batch case is perfect, so the value halves."""
    return [
        ("masked mean over valid pixels", {}, depth(DEPTH_PRED, True), depth(DEPTH_TARGET), main_value),
        ("smooth adds the second-order term", {"smooth": True}, depth(SMOOTH_MAP, True), depth(SMOOTH_MAP), 4e-3),
        ("all invalid", {}, depth([[1.0, 2.0]], True), depth([[0.0, 0.0]]), 0.0),
        ("batch of two images", {}, torch.cat([depth(DEPTH_PRED), depth(DEPTH_TARGET)]).requires_grad_(),
         torch.cat([depth(DEPTH_TARGET), depth(DEPTH_TARGET)]), main_value / 2),
        *extra,
    ]


def l1_cases():
    return depth_cases(5 / 3, extra=[
        ("aux output resized bilinearly", {}, [depth(AUX_TARGET, True), depth(AUX_DEPTH, True)], depth(AUX_TARGET),
         0.4 * 1.5),
    ])


def berhu_cases():
    c = 0.2 * 3  # the largest valid residual is 3 (the invalid pixel's 5 is left out)
    return depth_cases(((9 + c * c) / (2 * c) + (4 + c * c) / (2 * c)) / 3, extra=[
        ("below c it is L1", {}, depth([[10.0, 2.5]], True), depth([[5.0, 2.0]]), (0.5 + (25 + 1) / 2) / 2),
    ])


def huber_cases():
    return depth_cases((2.5 + 1.5) / 3, extra=[
        ("delta 2", {"delta": 2}, depth(DEPTH_PRED, True), depth(DEPTH_TARGET), (2 * (3 - 1) + 0.5 * 4) / 3),
        ("over- and under-prediction alike", {}, depth([[1.0, 7.0]], True), depth([[4.0, 4.0]]), 2.5),
    ])


def scale_invariant_cases():
    sum_sq, total = LN(2.5) ** 2 + LN(2) ** 2, LN(1.25)
    return depth_cases(sum_sq / 3 - 0.85 * total ** 2 / 9, extra=[
        ("variance_focus 0.5", {"variance_focus": 0.5}, depth(DEPTH_PRED, True), depth(DEPTH_TARGET),
         sum_sq / 3 - 0.5 * total ** 2 / 9),
        ("variance_focus 1 is blind to a per-image scale", {"variance_focus": 1},
         torch.cat([depth([[2.0, 4.0]]), depth([[3.0, 9.0]])]).requires_grad_(),
         torch.cat([depth([[1.0, 2.0]]), depth([[1.0, 3.0]])]), 0.0),
        ("variance_focus 0 is log MSE", {"variance_focus": 0}, depth([[2.0, 4.0]], True), depth([[1.0, 2.0]]),
         LN(2) ** 2),
    ])


LOSS_CASES = {
    "cross_entropy": ce_cases,
    "multi_scale_cross_entropy": ce_cases,
    "bootstrapped_cross_entropy": bootstrapped_cases,
    "l1_loss": l1_cases,
    "berhu_loss": berhu_cases,
    "huber_loss": huber_cases,
    "scale_invariant_loss": scale_invariant_cases,
}


def _inputs(output):
    return output if isinstance(output, list) else [output]


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_hand_cases_and_gradients(name):
    assert name in LOSS_CASES, f"loss '{name}' has no test cases"
    for title, options, output, target, expected in LOSS_CASES[name]():
        cfg = {"name": name, **options}
        frozen = copy.deepcopy(cfg)
        loss_fn = get_loss(cfg, {"name": "cross_entropy"})
        loss = loss_fn(output, target)
        assert cfg == frozen, "get_loss modified its config"
        assert loss.dim() == 0 and torch.isfinite(loss), title
        assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-7), title
        loss.backward()
        for tensor in _inputs(output):
            assert tensor.grad is not None and torch.isfinite(tensor.grad).all(), title
        if loss.item() > 0:
            assert any(tensor.grad.abs().sum() > 0 for tensor in _inputs(output)), title


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_rejects_unknown_options_and_wrong_weights_count(name):
    with pytest.raises(PtsemsegError, match=r"unknown option 'bogus' \(valid: .*scale_weight"):
        get_loss({"name": name, "bogus": 1}, {})
    _, options, output, target, _ = LOSS_CASES[name]()[0]
    loss_fn = get_loss({"name": name, **options, "scale_weight": [1.0, 0.5, 0.25]}, {})
    with pytest.raises(PtsemsegError, match="3 weights but the model returned 2 outputs"):
        loss_fn([output, output], target)


def test_loss_defaults_and_errors():
    default = get_loss(None, {"name": "cross_entropy"})
    assert default(logits(CONFIDENT), labels(1)).item() == pytest.approx(LN(4))
    assert get_loss({}, {"name": "l1_loss"})(depth([[3.0]]), depth([[1.0]])).item() == pytest.approx(2.0)
    with pytest.raises(PtsemsegError, match="missing option 'K'"):
        get_loss({"name": "bootstrapped_cross_entropy"}, {})
    with pytest.raises(PtsemsegError, match="variance_focus"):
        get_loss({"name": "scale_invariant_loss", "lambda": 0.5}, {})
    with pytest.raises(PtsemsegError, match="weight has 3 values for 2 classes"):
        get_loss({"name": "cross_entropy", "weight": [1, 2, 3]}, {})(logits(CONFIDENT), labels(0))
    with pytest.raises(PtsemsegError, match="same shape"):
        get_loss({"name": "l1_loss"}, {})(torch.ones(1, 2, 2, 2), torch.ones(1, 1, 2, 2))
    with pytest.raises(PtsemsegError, match="unknown loss 'l2_loss'"):
        get_loss({"name": "l2_loss"}, {})


# --- Optimizers ------------------------------------------------------------------------------------------
OPTIMIZER_CASES = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
    "adam": {"lr": 0.1, "betas": [0.9, 0.99]},
    "adamw": {"lr": 0.1, "weight_decay": 0.01},
    "adamax": {"lr": 0.1},
    "asgd": {"lr": 0.1},
    "adadelta": {"lr": 1.0, "eps": 0.01},
    "adagrad": {"lr": 0.5},
    "rmsprop": {"lr": 0.01},
}


def quadratic_descent(optimizer_cfg, steps=5):
    """Values of |w − (1, −2, 3)|² before and after `steps` steps from w = 0."""
    weights = torch.zeros(3, requires_grad=True)
    goal = torch.tensor([1.0, -2.0, 3.0])
    optimizer = get_optimizer(optimizer_cfg, [weights])
    values = []
    for _ in range(steps):
        optimizer.zero_grad()
        value = ((weights - goal) ** 2).sum()
        value.backward()
        optimizer.step()
        values.append(value.item())
    return optimizer, values[0], ((weights - goal) ** 2).sum().item()


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_decreases_a_quadratic(name):
    assert name in OPTIMIZER_CASES, f"optimizer '{name}' has no test case"
    options = OPTIMIZER_CASES[name]
    optimizer, before, after = quadratic_descent({"name": name, **options})
    assert type(optimizer) is OPTIMIZERS.get(name)
    assert optimizer.param_groups[0]["lr"] == options["lr"]
    assert after < 0.95 * before
    with pytest.raises(PtsemsegError, match=f"optimizer '{name}': unknown option 'lr_rate' \\((closest: [^;]*; )?valid: .*lr"):
        get_optimizer({"name": name, "lr_rate": 0.1}, [torch.zeros(1, requires_grad=True)])


def test_fused_kernel_by_default_where_the_class_has_one():
    weights = [torch.zeros(2, requires_grad=True)]
    for name in ("sgd", "adam", "adamw", "adagrad"):
        assert get_optimizer({"name": name, "lr": 0.1}, weights).param_groups[0]["fused"] is True, name
    assert not get_optimizer({"name": "adam", "fused": False}, weights).param_groups[0]["fused"]
    assert not get_optimizer({"name": "adam", "foreach": True}, weights).param_groups[0]["fused"]
    assert "fused" not in get_optimizer({"name": "rmsprop"}, weights).param_groups[0]
    fused, _, fused_after = quadratic_descent({"name": "adam", "lr": 0.1})
    _, _, plain_after = quadratic_descent({"name": "adam", "lr": 0.1, "fused": False})
    assert fused_after == pytest.approx(plain_after, rel=1e-5)


def test_optimizer_default_and_bad_values():
    optimizer, before, after = quadratic_descent(None)
    assert type(optimizer) is torch.optim.SGD and optimizer.param_groups[0]["lr"] == 0.01 and after < before
    assert optimizer.param_groups[0]["momentum"] == 0
    adam = get_optimizer({"name": "adam", "betas": [0.5, 0.9]}, [torch.zeros(1, requires_grad=True)])
    assert adam.param_groups[0]["betas"] == (0.5, 0.9)
    with pytest.raises(PtsemsegError, match="optimizer 'sgd'.*Invalid learning rate"):
        get_optimizer({"name": "sgd", "lr": -1.0}, [torch.zeros(1, requires_grad=True)])
    with pytest.raises(PtsemsegError, match="unknown option 'nesterovv', 'mom'"):
        get_optimizer({"name": "sgd", "nesterovv": True, "mom": 0.9}, [torch.zeros(1, requires_grad=True)])


# --- LR schedules ----------------------------------------------------------------------------------------
TOTAL_ITERS = 12


def cosine(T, eta):
    return lambda i, base: eta + (base - eta) * (1 + math.cos(math.pi * min(i, T) / T)) / 2


SCHEDULE_CASES = {  # name -> [(options, lr at iteration i for base lr `base`)]
    "constant_lr": [({}, lambda i, base: base)],
    "poly_lr": [
        ({}, lambda i, base: base * max(0.0, 1 - i / TOTAL_ITERS) ** 0.9),
        ({"max_iter": 8, "gamma": 1.0}, lambda i, base: base * max(0.0, 1 - i / 8)),
        ({"max_iter": 10, "decay_iter": 3, "gamma": 2}, lambda i, base: base * (1 - min(i // 3 * 3, 10) / 10) ** 2),
    ],
    "multi_step": [({"milestones": [6, 3], "gamma": 0.5}, lambda i, base: base * 0.5 ** ((i >= 3) + (i >= 6)))],
    "cosine_annealing": [
        ({}, cosine(TOTAL_ITERS, 0.0)),
        ({"T_max": 8, "eta_min": 0.001}, cosine(8, 0.001)),
    ],
    "exp_lr": [({"gamma": 0.8}, lambda i, base: base * 0.8 ** i)],
}

WARMUPS = {  # warm-up options -> multiplier at iteration i
    "no warm-up": ({}, lambda i: 1.0),
    "linear": ({"warmup_iters": 4}, lambda i: {0: 0.2, 1: 0.4, 2: 0.6, 3: 0.8}.get(i, 1.0)),
    "linear 0.5": ({"warmup_iters": 2, "warmup_mode": "linear", "warmup_factor": 0.5},
                   lambda i: {0: 0.5, 1: 0.75}.get(i, 1.0)),
    "constant": ({"warmup_iters": 3, "warmup_mode": "constant", "warmup_factor": 0.1}, lambda i: 0.1 if i < 3 else 1),
    "default 100 iterations": ({"warmup_mode": "constant"}, lambda i: 0.2),
}

BASE_LRS = (0.1, 0.02)


def make_optimizer():
    """SGD with two parameter groups of different base learning rates."""
    return torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": BASE_LRS[0]},
                            {"params": [torch.zeros(1, requires_grad=True)], "lr": BASE_LRS[1]}], lr=BASE_LRS[0])


def lr_curve(optimizer, scheduler, steps):
    """The learning rates used at the next `steps` iterations, group after group for each iteration."""
    curve = []
    for _ in range(steps):
        curve += [group["lr"] for group in optimizer.param_groups]
        optimizer.step()
        scheduler.step()
    return curve


def _checkpoint_round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("warmup", list(WARMUPS))
@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_schedule_follows_its_closed_form_and_resumes_exactly(name, warmup):
    assert name in SCHEDULE_CASES, f"lr schedule '{name}' has no test case"
    warmup_options, multiplier = WARMUPS[warmup]
    for options, closed_form in SCHEDULE_CASES[name]:
        cfg = {"name": name, **options, **warmup_options}
        frozen = copy.deepcopy(cfg)
        optimizer = make_optimizer()
        curve = lr_curve(optimizer, get_scheduler(optimizer, cfg, TOTAL_ITERS), TOTAL_ITERS + 3)
        assert cfg == frozen, "get_scheduler modified its config"
        expected = [closed_form(i, base) * multiplier(i) for i in range(TOTAL_ITERS + 3) for base in BASE_LRS]
        assert curve == pytest.approx(expected, rel=1e-9, abs=1e-12), options

        # Interrupted after 5 iterations and restored from a checkpoint, the curve carries on unchanged.
        optimizer = make_optimizer()
        scheduler = get_scheduler(optimizer, cfg, TOTAL_ITERS)
        lr_curve(optimizer, scheduler, 5)
        saved = _checkpoint_round_trip({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
        resumed_optimizer = make_optimizer()
        resumed = get_scheduler(resumed_optimizer, cfg, TOTAL_ITERS)
        resumed_optimizer.load_state_dict(saved["optimizer"])
        resumed.load_state_dict(saved["scheduler"])
        resumed_curve = lr_curve(resumed_optimizer, resumed, TOTAL_ITERS - 2)
        assert resumed_curve == pytest.approx(expected[5 * len(BASE_LRS):], rel=1e-9)


def test_poly_lr_really_decays_and_schedule_errors():
    optimizer = make_optimizer()
    curve = lr_curve(optimizer, get_scheduler(optimizer, {"name": "poly_lr", "gamma": 1.0}, 10), 10)
    assert [round(lr / BASE_LRS[0], 6) for lr in curve[::2]] == [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    optimizer = make_optimizer()
    assert lr_curve(optimizer, get_scheduler(optimizer, None, 10), 3) == list(BASE_LRS) * 3
    with pytest.raises(PtsemsegError, match=r"scheduler 'poly_lr': unknown option 'power' \(valid: max_iter, "
                                            r"decay_iter, gamma, warmup_iters, warmup_mode, warmup_factor\)"):
        get_scheduler(make_optimizer(), {"name": "poly_lr", "power": 0.9}, 10)
    with pytest.raises(PtsemsegError, match="scheduler 'multi_step': missing option 'milestones'"):
        get_scheduler(make_optimizer(), {"name": "multi_step"}, 10)
    with pytest.raises(PtsemsegError, match="lr_schedule.milestones must be a list"):
        get_scheduler(make_optimizer(), {"name": "multi_step", "milestones": 5}, 10)
    with pytest.raises(PtsemsegError, match="lr_schedule.warmup_mode must be linear or constant"):
        get_scheduler(make_optimizer(), {"name": "constant_lr", "warmup_mode": "cosine"}, 10)
    with pytest.raises(PtsemsegError, match="unknown scheduler 'poly'"):
        get_scheduler(make_optimizer(), {"name": "poly"}, 10)


# --- Metrics ---------------------------------------------------------------------------------------------
NAN = math.nan


def seg_batch(pred, target):
    return torch.tensor([pred]), torch.tensor([target])


# Classes 0 and 1 only, class 2 absent from both: confusion [[3, 1], [1, 1]] plus three ignored pixels
# (255 and the out-of-range 7 and -1) whose predictions must not count.
SEG_PRED = [[0, 0, 0, 1, 1, 0, 2, 2, 0]]
SEG_TARGET = [[0, 0, 0, 0, 1, 1, 255, 7, -1]]
SEG_SCORES = {"overall_acc": 4 / 6, "mean_acc": (3 / 4 + 1 / 2) / 2, "mean_iou": (3 / 5 + 1 / 3) / 2,
              "fwiou": 4 / 6 * 3 / 5 + 2 / 6 * 1 / 3, "per_class_iou": [3 / 5, 1 / 3, NAN]}

# Image 1: gt (2, 4) valid, 0 invalid, 100 above the 80 m cap; pred 1 and 4.  Image 2: perfect.
DEPTH_IMAGE_1 = ([[1.0, 4.0], [3.0, 5.0]], [[2.0, 4.0], [0.0, 100.0]])
DEPTH_IMAGE_1_SCORES = {"abs_rel": 0.25, "sq_rel": 0.25, "rmse": math.sqrt(0.5), "rmse_log": LN(2) / math.sqrt(2),
                        "log10": math.log10(2) / 2, "silog": 100 * LN(2) / 2, "delta1": 0.5, "delta2": 0.5,
                        "delta3": 0.5}
PERFECT_SCORES = {"abs_rel": 0, "sq_rel": 0, "rmse": 0, "rmse_log": 0, "log10": 0, "silog": 0, "delta1": 1,
                  "delta2": 1, "delta3": 1}


def depth_batch(*images):
    return (torch.cat([depth(pred) for pred, _ in images]), torch.cat([depth(gt) for _, gt in images]))


def depth_scores(n_images, **values):
    return {**{key: values.get(key, NAN) for key in PERFECT_SCORES}, "n_images": n_images}


def crop_image(pred_in_row_3):
    """10×10 gt of 1 m; the prediction is 1 except row 3, inside the Eigen crop but above the Garg crop."""
    pred = torch.ones(1, 1, 10, 10)
    pred[..., 3, :] = pred_in_row_3
    return pred, torch.ones(1, 1, 10, 10)


METRIC_CASES = {  # name -> [(constructor kwargs, batches, expected scores)]
    "seg": [
        ({"n_classes": 3}, [seg_batch(SEG_PRED, SEG_TARGET)], SEG_SCORES),
        ({"n_classes": 3}, [seg_batch([[0, 0, 0, 1]], [[0, 0, 0, 0]]), seg_batch([[1, 0, 2, 2]], [[1, 1, 255, -1]])],
         SEG_SCORES),
        ({"n_classes": 3}, [seg_batch([[0, 2]], [[0, 0]])],  # class 2 predicted but absent: IoU 0, counted
         {"overall_acc": 0.5, "mean_acc": 0.5, "mean_iou": 0.25, "fwiou": 0.5, "per_class_iou": [0.5, NAN, 0.0]}),
        ({"n_classes": 2, "ignore_index": 0}, [seg_batch([[1, 0, 1]], [[0, 1, 1]])],
         {"overall_acc": 0.5, "mean_acc": 0.5, "mean_iou": 0.25, "fwiou": 0.5, "per_class_iou": [0.0, 0.5]}),
        ({"n_classes": 2}, [], {"overall_acc": NAN, "mean_acc": NAN, "mean_iou": NAN, "fwiou": NAN,
                                "per_class_iou": [NAN, NAN]}),
    ],
    "depth": [
        ({}, [depth_batch(DEPTH_IMAGE_1)], depth_scores(1, **DEPTH_IMAGE_1_SCORES)),
        # The mean over images, not over pixels: image 1 and a perfect one.
        ({}, [depth_batch(DEPTH_IMAGE_1, ([[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]))],
         depth_scores(2, **{k: (DEPTH_IMAGE_1_SCORES[k] + PERFECT_SCORES[k]) / 2 for k in PERFECT_SCORES})),
        ({}, [depth_batch(DEPTH_IMAGE_1), depth_batch(([[1.0]], [[0.0]]))], depth_scores(1, **DEPTH_IMAGE_1_SCORES)),
        ({"max_depth": 80}, [depth_batch(([[200.0]], [[10.0]]))],  # predictions capped at 80 m
         depth_scores(1, abs_rel=7.0, sq_rel=490.0, rmse=70.0, rmse_log=LN(8), log10=math.log10(8), silog=0.0,
                      delta1=0, delta2=0, delta3=0)),
        ({"min_depth": 0.5}, [depth_batch(([[0.1]], [[1.0]]))],  # ... and at min_depth
         depth_scores(1, abs_rel=0.5, sq_rel=0.25, rmse=0.5, rmse_log=LN(2), log10=math.log10(2), silog=0.0,
                      delta1=0, delta2=0, delta3=0)),
        ({"median_scaling": True}, [depth_batch(([[1.0, 2.0, 3.0]], [[2.0, 4.0, 6.0]]))],
         depth_scores(1, **PERFECT_SCORES)),
        # medians 5 and 2.5 (even counts: mean of the middle two) -> ×2 = (2, 4, 6, 200), then capped at 80
        ({"median_scaling": True}, [depth_batch(([[1.0, 2.0, 3.0, 100.0]], [[2.0, 4.0, 6.0, 8.0]]))],
         depth_scores(1, abs_rel=9 / 4, sq_rel=72 ** 2 / 8 / 4, rmse=36.0, rmse_log=LN(10) / 2,
                      log10=0.25, silog=100 * math.sqrt(LN(10) ** 2 / 4 - LN(10) ** 2 / 16),
                      delta1=0.75, delta2=0.75, delta3=0.75)),
        # medians 5 and 2.5 (not the lower middles 4 and 1.5) -> ×2 = (2, 3, 7, 200), then capped at 80
        ({"median_scaling": True}, [depth_batch(([[1.0, 1.5, 3.5, 100.0]], [[2.0, 4.0, 6.0, 8.0]]))],
         {"abs_rel": (0 + 1 / 4 + 1 / 6 + 9) / 4, "delta1": 0.5, "delta2": 0.75, "n_images": 1}),
        # a fixed scale into metres before scoring (monodepth2's stereo models: 5.4; values exact in float32 here)
        ({"pred_depth_scale": 2.5}, [depth_batch(([[1.0, 2.0]], [[2.5, 5.0]]))], depth_scores(1, **PERFECT_SCORES)),
        ({"pred_depth_scale": 5.4}, [depth_batch(([[1.0]], [[1.0]]))],
         depth_scores(1, abs_rel=4.4, sq_rel=4.4 ** 2, rmse=4.4, rmse_log=LN(5.4), log10=math.log10(5.4), silog=0.0,
                      delta1=0, delta2=0, delta3=0)),
        # the scale comes first, the median ratio is measured on the scaled prediction (monodepth2's order)
        ({"pred_depth_scale": 2.0, "median_scaling": True}, [depth_batch(([[1.0, 2.0, 3.0]], [[4.0, 8.0, 12.0]]))],
         {**depth_scores(1, **PERFECT_SCORES), "ratio_median": 2.0}),
        ({"crop": "garg"}, [crop_image(2.0)], depth_scores(1, **PERFECT_SCORES)),
        ({"crop": "eigen"}, [crop_image(2.0)],
         depth_scores(1, abs_rel=9 / 54, sq_rel=9 / 54, rmse=math.sqrt(9 / 54), rmse_log=math.sqrt(9 / 54) * LN(2),
                      log10=9 / 54 * math.log10(2), silog=100 * LN(2) * math.sqrt(9 / 54 - (9 / 54) ** 2),
                      delta1=45 / 54, delta2=45 / 54, delta3=45 / 54)),
        ({}, [depth_batch(([[1.0, 2.0]], [[0.0, 0.0]]))], depth_scores(0)),
        ({}, [], depth_scores(0)),
    ],
    "scene": [
        # 4 images: class 0 right twice, class 1 once right once wrong; class 2 never in the ground truth.
        ({"n_classes": 3}, [(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 0, 1, 1]))],
         {"accuracy": 0.75, "mean_class_acc": 0.75}),
        ({"n_classes": 3}, [(torch.tensor([2]), torch.tensor([0])), (torch.tensor([2]), torch.tensor([2]))],
         {"accuracy": 0.5, "mean_class_acc": 0.5}),
        ({"n_classes": 2}, [], {"accuracy": NAN, "mean_class_acc": NAN}),
    ],
}


def assert_scores(scores, expected, title):
    assert set(scores) >= set(expected), title
    for key, value in expected.items():
        got = scores[key]
        if isinstance(value, list):
            assert len(got) == len(value) and all(isinstance(g, float) for g in got), (title, key)
            assert got == pytest.approx(value, rel=1e-6, nan_ok=True), (title, key)
        else:
            assert got == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), (title, key, got, value)


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_hand_cases(name):
    assert name in METRIC_CASES, f"metric '{name}' has no test cases"
    for index, (kwargs, batches, expected) in enumerate(METRIC_CASES[name]):
        metric = METRICS.get(name)(**kwargs)
        for pred, target in batches:
            metric.update(pred, target)
        scores = metric.compute()
        assert_scores(scores, expected, f"{name} case {index}")
        assert all(isinstance(v, (float, int, list)) for v in scores.values())

        # Two accumulators merged equal one that saw everything; reset starts over.
        halves = METRICS.get(name)(**kwargs), METRICS.get(name)(**kwargs)
        for i, (pred, target) in enumerate(batches):
            halves[i % 2].update(pred, target)
        halves[0].merge(halves[1].state())
        assert_scores(halves[0].compute(), expected, f"{name} case {index} merged")
        metric.reset()
        assert_scores(metric.compute(), METRICS.get(name)(**kwargs).compute(), f"{name} case {index} reset")


def test_metric_bad_inputs_fail():
    seg = METRICS.get("seg")(3)
    with pytest.raises(ValueError, match="predicted labels must lie in 0..2"):
        seg.update(*seg_batch([[3]], [[0]]))
    with pytest.raises(ValueError, match="differ in shape"):
        seg.update(torch.zeros(1, 2, dtype=torch.int64), torch.zeros(1, 3, dtype=torch.int64))
    with pytest.raises(PtsemsegError, match="crop must be one of garg, eigen"):
        METRICS.get("depth")(crop="kitti")
    with pytest.raises(PtsemsegError, match="0 < min_depth < max_depth"):
        METRICS.get("depth")(min_depth=10, max_depth=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metric_state_follows_the_data_onto_the_gpu():
    seg, depth_metrics = METRICS.get("seg")(3), METRICS.get("depth")()
    pred, target = seg_batch(SEG_PRED, SEG_TARGET)
    seg.update(pred.cuda(), target.cuda())
    depth_metrics.update(*(tensor.cuda() for tensor in depth_batch(DEPTH_IMAGE_1)))
    assert seg.state()["confusion"].is_cuda and depth_metrics.state()["sums"].is_cuda
    assert_scores(seg.compute(), SEG_SCORES, "seg on cuda")
    assert_scores(depth_metrics.compute(), depth_scores(1, **DEPTH_IMAGE_1_SCORES), "depth on cuda")


@pytest.mark.parametrize("crop, rows, cols", [(None, (0, 10), (0, 10)), ("garg", (4, 9), (0, 9)),
                                              ("eigen", (3, 9), (0, 9))])
def test_crop_fractions(crop, rows, cols):
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[rows[0]:rows[1], cols[0]:cols[1]] = True
    assert torch.equal(crop_mask(10, 10, crop, "cpu"), expected)
    garg = crop_mask(375, 1242, "garg", "cpu").nonzero()
    assert garg.min(0).values.tolist() == [153, 44] and garg.max(0).values.tolist() == [370, 1196]
