"""The model contract over the registry: every architecture with every head set it supports, fed the sample keys
it declares (built from the sample schema), returns exactly its named outputs with the declared shapes."""
import pytest
import torch

from ptsemseg.models import MODELS, get_model, model_input_keys
from ptsemseg.models._inputs import example_inputs
from ptsemseg.models.heads import IMAGE
from ptsemseg.tasks import TASKS

# arch -> options that keep it small (an empty mapping: tested at its real size). Aliases name their target.
MODEL_CASES = {
    "deeplab": {"backbone": "resnet18"},
    "pspnet": {"backbone": "resnet18"},
    "fcrn": {"backbone": "resnet18"},
    "fcn8s": {},
    "segnet": {},
    "frrn": {"model_type": "A"},
    "frrnA": {},
    "frrnB": {},
    "dispnet": {},
    "fusenet": {},
    "malleable25d": {"backbone": "resnet18"},
    "sagate": {"backbone": "resnet18_v1c"},
    "adapnetpp": {"width": 8, "decoder_channels": 32},
    "ssma": {"width": 8, "decoder_channels": 32},
}
ALIASES = {"fcn": "fcn8s"}
HEAD_SETS = [{"seg": 5}, {"depth": 1}, {"seg": 5, "depth": 1}, {"seg": 5, "scene": 3}]
# Auxiliary outputs `<head>/<suffix>` every dense head adds in train mode, with their downsampling factor.
TRAIN_AUX = {"pspnet": {"aux": 8}, "dispnet": {"scale1": 2, "scale2": 4, "scale3": 8}, "malleable25d": {"aux": 8},
             "sagate": {"aux": 16}, "adapnetpp": {"aux1": 1, "aux2": 1}}
SIZE = (37, 53)  # odd on purpose


def test_every_registered_architecture_has_a_case():
    missing = [name for name in MODELS.names() if name not in MODEL_CASES and name not in ALIASES]
    assert not missing, f"add contract cases for the architectures {missing} to MODEL_CASES"
    assert all(MODELS.get(alias) is MODELS.get(target) for alias, target in ALIASES.items())


def schema_inputs(keys, batch=2, size=SIZE):
    """One random batch per input key, shaped and typed as the sample schema says the loaders give it."""
    return example_inputs(keys, batch, size)


def expected_shape(name, channels, batch=2, size=SIZE):
    return (batch, channels) if TASKS.get(name).kind == IMAGE else (batch, channels, *size)


@pytest.mark.parametrize("heads", HEAD_SETS, ids=lambda heads: "+".join(heads))
@pytest.mark.parametrize("arch", list(MODEL_CASES))
def test_model_contract(arch, heads):
    torch.manual_seed(0)
    model = get_model({"arch": arch, **MODEL_CASES[arch]}, heads)
    keys = model_input_keys({"arch": arch, **MODEL_CASES[arch]})
    assert tuple(model.input_keys) == keys, "the builder and the module declare different inputs"
    inputs = schema_inputs(keys)

    model.train()
    outputs = model(*inputs)
    aux = TRAIN_AUX.get(arch, {})
    expected_train = {name: expected_shape(name, channels) for name, channels in heads.items()}
    for name, channels in heads.items():
        if TASKS.get(name).kind != IMAGE:
            expected_train.update({f"{name}/{suffix}": (2, channels, *(-(-side // factor) for side in SIZE))
                                   for suffix, factor in aux.items()})
    assert {name: tuple(output.shape) for name, output in outputs.items()} == expected_train
    sum(output.float().mean() for output in outputs.values()).backward()
    without_grad = [name for name, p in model.named_parameters()
                    if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not without_grad, f"parameters without a finite gradient: {without_grad[:3]}"

    model.eval()
    with torch.no_grad():
        evaluated = model(*inputs)
    assert list(evaluated) == list(heads), "eval mode returns exactly one output per head, in head order"
    for name, output in evaluated.items():
        assert output.shape == expected_shape(name, heads[name]), name
        assert torch.isfinite(output).all(), name
        if name == "depth":
            assert (output > 0).all()
