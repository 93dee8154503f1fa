"""Encoders, registered by name (`model.backbone` / `model.encoder`): feature pyramids for the architectures.

In the manner of timm's `features_only` and SMP's encoders, `get_encoder(name, in_channels=3, output_stride=32,
pretrained="none", **options)` returns an `nn.Module` whose `forward(x)` returns a list of feature maps and
which exposes, per map, `out_channels` and `strides` (input pixels per feature pixel). `in_channels` other than 3
adapts the first conv of pretrained RGB weights; `output_stride` below the encoder's native one dilates the
deepest stages instead of striding. Two encoders of one kind side by side are two independent modules.
"""
from ptsemseg.registry import Registry

ENCODERS = Registry("encoder")


def get_encoder(name, **options):
    """Build the encoder registered as `name` with its options."""
    return ENCODERS.get(name)(**options)


from ptsemseg.encoders import resnet  # noqa: E402,F401
from ptsemseg.encoders import vgg  # noqa: E402,F401
