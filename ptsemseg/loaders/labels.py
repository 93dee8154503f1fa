"""The Cityscapes label set (34 label ids → 19 train ids), shared by Cityscapes and KITTI semantics.

Facts from the Cityscapes definition (cityscapesScripts `helpers/labels.py`): label ids 0..33, of which 19
are trained on; every other id is ignored. KITTI semantics annotates with the same 34 ids.
"""
import cv2
import numpy as np

IGNORE_INDEX = 255

# (label id, name, train id or None when the class is ignored in training and evaluation)
CITYSCAPES_LABELS = (
    (0, "unlabeled", None), (1, "ego vehicle", None), (2, "rectification border", None),
    (3, "out of roi", None), (4, "static", None), (5, "dynamic", None), (6, "ground", None),
    (7, "road", 0), (8, "sidewalk", 1), (9, "parking", None), (10, "rail track", None),
    (11, "building", 2), (12, "wall", 3), (13, "fence", 4), (14, "guard rail", None),
    (15, "bridge", None), (16, "tunnel", None), (17, "pole", 5), (18, "polegroup", None),
    (19, "traffic light", 6), (20, "traffic sign", 7), (21, "vegetation", 8), (22, "terrain", 9),
    (23, "sky", 10), (24, "person", 11), (25, "rider", 12), (26, "car", 13), (27, "truck", 14),
    (28, "bus", 15), (29, "caravan", None), (30, "trailer", None), (31, "train", 16),
    (32, "motorcycle", 17), (33, "bicycle", 18),
)

CITYSCAPES_CLASS_NAMES = tuple(name for _, name, _ in sorted(
    (label for label in CITYSCAPES_LABELS if label[2] is not None), key=lambda label: label[2]))

# RGB colours of the 19 train ids, in train-id order (the official colour palette).
CITYSCAPES_COLORS = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
], dtype=np.uint8)


def _id_to_train_id_table():
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, _, train_id in CITYSCAPES_LABELS:
        if train_id is not None:
            table[label_id] = train_id
    return table


# Look-up table over every uint8 value: label id → train id, anything unknown → 255.
ID_TO_TRAIN_ID = _id_to_train_id_table()


def label_ids_to_train_ids(label_ids):
    """Map an H×W uint8 image of Cityscapes label ids to train ids (0..18, 255 = ignore)."""
    return cv2.LUT(label_ids, ID_TO_TRAIN_ID)
