"""Prints what a Python stage's results depend on beyond its code: the interpreter and the
versions of the packages it imports. cfrun runs it when it plans (`env_probe`) and keys the
stage on its output, so upgrading scikit-learn reruns the stage and nothing else."""

import platform
from importlib.metadata import version

print("python", platform.python_version())
for package in ("numpy", "scikit-learn", "scipy", "safetensors"):
    print(package, version(package))
