"""Imports user models into the user repository (data_dir/model_repository), so the server serves
them like catalogued ones: config.pbtxt + catalog.yaml + tags file + category CSVs in
<user_repository>/<name>/, the ONNX weights at <models_dir>/<name>/1/model.onnx.

Two kinds, one module each:

- `skier233`: skier233 packages (docs/aitagger-contract.md §3.2-3.4): a model YAML (read by
  `skier233_yaml`), a TorchScript `.pt` and a `.tags.txt`; the `.pt` is converted to ONNX and
  verified against TorchScript (`torchscript_to_onnx`). Encrypted Patreon models cannot be imported.
- `onnx_classifier`: any ONNX multi-label classifier with a labels file and an input contract the
  user declares.

Both write through `staging` (hidden staging folders moved into place only when everything
succeeded) and check their inputs with `validation`. `skier233_upgrade` corrects skier233 models
imported by an earlier version (their normalisation, see Skier233Model.applied_normalization)."""

from stash_vision.catalog.importers.onnx_classifier import import_onnx_classifier
from stash_vision.catalog.importers.skier233 import import_skier233
from stash_vision.catalog.importers.skier233_upgrade import upgrade_skier233_imports
from stash_vision.catalog.importers.skier233_yaml import NORMALIZATIONS, Skier233Model, read_skier233_yaml
from stash_vision.catalog.importers.validation import ModelImportError, triton_name

__all__ = [
    "NORMALIZATIONS",
    "ModelImportError",
    "Skier233Model",
    "import_onnx_classifier",
    "import_skier233",
    "read_skier233_yaml",
    "triton_name",
    "upgrade_skier233_imports",
]
