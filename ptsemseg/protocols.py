"""Named evaluation protocols, registered by their YAML name (`testing.protocol`).

A protocol is the exact evaluation a published table uses: the `testing:` keys (crop, depth caps, whether the
ground truth is capped too, median scaling) and the dataset options that choose its ground truth. The config's
own keys override the preset's, so `testing.protocol: kitti_eigen` with `testing.median_scaling: true` is
monodepth2's monocular evaluation. docs/protocols.md gives the sources and what differs between them.
"""
from dataclasses import dataclass, field

from ptsemseg.errors import PtsemsegError
from ptsemseg.registry import Registry

PROTOCOLS = Registry("protocol")


@dataclass(frozen=True)
class Protocol:
    """A preset of `testing:` keys and of `data:` options for one dataset; `requires` are data options it
    cannot do without (the Eigen split is a list of raw drives)."""

    name: str
    summary: str
    dataset: str
    testing: dict
    data: dict = field(default_factory=dict)
    requires: dict = field(default_factory=dict)

    def keys(self):
        """The config keys this preset sets, as a config fragment."""
        return {"testing": dict(self.testing), "data": dict(self.data)}

    def check(self, data):
        """Fail in one line when the config's `data:` section is not a dataset this protocol scores."""
        dataset = data.get("dataset")
        if dataset != self.dataset:
            raise PtsemsegError(f"{self.name} scores dataset {self.dataset}, got data.dataset {dataset!r}")
        for key, value in self.requires.items():
            if data.get(key) != value:
                raise PtsemsegError(f"{self.name} needs data.{key}: {value}, got {data.get(key)!r}")


def register(protocol):
    PROTOCOLS.register(protocol.name)(protocol)


register(Protocol(
    "kitti_eigen", "KITTI Eigen split (697 frames of the raw drives), Velodyne ground truth as monodepth2 exports "
    "it, Garg crop, 1e-3..80 m", dataset="kitti", requires={"layout": "raw"}, data={"gt": "velodyne"},
    testing={"crop": "garg", "min_depth": 1e-3, "max_depth": 80.0, "cap_gt": True, "median_scaling": False}))
register(Protocol(
    "kitti_eigen_benchmark", "the 652 Eigen test frames with an annotated depth map (data_depth_annotated), every "
    "annotated pixel, predictions clamped to 1e-3..80 m", dataset="kitti", requires={"layout": "raw"},
    data={"gt": "annotated", "skip_unannotated": True},
    testing={"crop": "none", "min_depth": 1e-3, "max_depth": 80.0, "cap_gt": False, "median_scaling": False}))
register(Protocol(
    "nyu_eigen", "NYUv2 test images (654), filled depth, Eigen crop (rows 45:471, cols 41:601 of 480x640), "
    "1e-3..10 m", dataset="nyuv2", data={"depth_source": "filled"},
    testing={"crop": "nyu_eigen", "min_depth": 1e-3, "max_depth": 10.0, "cap_gt": True, "median_scaling": False}))
register(Protocol(
    "cityscapes", "Cityscapes depth from the disparity maps (val or test split), the seed project's crop (rows "
    "5-80 %, cols 5-99 %), 1e-3..80 m", dataset="cityscapes",
    testing={"crop": "cityscapes", "min_depth": 1e-3, "max_depth": 80.0, "cap_gt": True, "median_scaling": False}))


def protocol_keys(cfg):
    """The config fragment that `cfg`'s `testing.protocol` sets, after checking it fits `cfg`'s data; {} without
    a protocol."""
    name = (cfg.get("testing") or {}).get("protocol") if isinstance(cfg.get("testing"), dict) else None
    if name is None:
        return {}
    if not isinstance(name, str):
        raise PtsemsegError(f"must be a protocol name ({', '.join(PROTOCOLS.names())}), got {name!r}")
    protocol = PROTOCOLS.get(name)
    protocol.check(cfg.get("data") if isinstance(cfg.get("data"), dict) else {})
    return protocol.keys()
