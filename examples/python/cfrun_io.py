"""Reading and writing cfrun artifacts from Python (see docs/FORMATS.md).

Every artifact is a folder: a safetensors file with one tensor per split (`train`, `test`) and a
small `meta.json`, or a `metrics.json`. Only `numpy` and `safetensors` are needed.
"""

import json
import os

import numpy as np
from safetensors.numpy import load_file, save_file


def _meta(folder):
    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
        return json.load(f)


def read_images(folder):
    """(train, test) uint8 arrays [N, C, H, W] (clips: [N, C, T, H, W]) and the metadata."""
    t = load_file(os.path.join(folder, "images.safetensors"))
    return t["train"], t["test"], _meta(folder)


def read_labels(folder):
    """(train, test) uint32 class ids [N] and the metadata (num_classes, class_names, source)."""
    t = load_file(os.path.join(folder, "labels.safetensors"))
    return t["train"], t["test"], _meta(folder)


def read_features(folder):
    """(train, test) float32 matrices [N, D]. An images folder counts as features: its pixels
    flattened and scaled to [0, 1], as cfrun's own ops read it."""
    if os.path.exists(os.path.join(folder, "images.safetensors")):
        train, test, _ = read_images(folder)
        flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255.0
        return flat(train), flat(test)
    t = load_file(os.path.join(folder, "features.safetensors"))
    return t["train"], t["test"]


def write_features(folder, train, test, source):
    """Writes a features artifact: float32 [N, D] per split."""
    train = np.ascontiguousarray(train, dtype=np.float32)
    test = np.ascontiguousarray(test, dtype=np.float32)
    save_file({"train": train, "test": test}, os.path.join(folder, "features.safetensors"))
    _write_json(folder, "meta.json", {"dim": int(train.shape[1]), "source": source})


def write_labels(folder, train, test, num_classes, source, class_names=()):
    """Writes a labels artifact: uint32 ids in [0, num_classes) per split."""
    train = np.ascontiguousarray(train, dtype=np.uint32)
    test = np.ascontiguousarray(test, dtype=np.uint32)
    save_file({"train": train, "test": test}, os.path.join(folder, "labels.safetensors"))
    meta = {"num_classes": int(num_classes), "class_names": list(class_names), "source": source}
    _write_json(folder, "meta.json", meta)


def write_metrics(folder, values, details=None):
    """Writes a metrics artifact: named finite numbers, plus free-form details."""
    values = {k: float(v) for k, v in values.items()}
    _write_json(folder, "metrics.json", {"values": values, "details": details or {}})


def _write_json(folder, name, value):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
