"""ptsemseg: a YAML-driven model zoo for semantic segmentation, RGB-D fusion and monocular depth."""
__version__ = "0.1.0"
