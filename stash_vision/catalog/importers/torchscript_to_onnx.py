"""Converting a skier233 TorchScript `.pt` to ONNX, verified against TorchScript before anything
is written: Triton has no TorchScript runtime in the embedded build, and skier233 models need
none of it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stash_vision.catalog.importers.validation import SKIER233_EXTRA_HINT, ModelImportError

INPUT_TENSOR = "INPUT__0"
OUTPUT_TENSOR = "OUTPUT__0"
# Old enough for the ONNX Runtime in every Triton release we target, new enough for ResNet/ViT ops.
ONNX_OPSET = 17
# Max |logit difference| between TorchScript and ONNX Runtime (fp32 both): real conversion bugs
# are orders of magnitude larger; reordered float sums stay around 1e-5.
MAX_LOGIT_DIFFERENCE = 1e-3


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise ModelImportError(
            f"converting skier233 TorchScript models needs PyTorch: {SKIER233_EXTRA_HINT} ({error})"
        ) from error
    return torch


def convert_torchscript(pt_path: Path, onnx_path: Path, size: int, num_tags: int) -> float:
    """Export the TorchScript model to ONNX (dynamic batch, INPUT__0 -> OUTPUT__0, float32) and
    check it against TorchScript; returns the max |logit difference|."""
    torch = _import_torch()
    try:
        with _quiet_torch():
            module = torch.jit.load(str(pt_path), map_location="cpu")
    except Exception as error:  # torch raises RuntimeError/ValueError/pickle errors alike
        raise ModelImportError(
            f"{pt_path} is not a TorchScript model torch.jit.load can read ({type(error).__name__}: {error})"
        ) from error
    # The original runs fp16 under autocast; the converted model is fp32 end to end, what Triton
    # gets from the server's float32 preprocessing.
    module = module.float().eval()
    example = torch.zeros(1, 3, size, size, dtype=torch.float32)
    try:
        with _quiet_torch(), torch.no_grad():
            # A ScriptModule can only go through the TorchScript-based exporter: the default
            # dynamo exporter traces Python code with torch.export, which a ScriptModule has none of.
            torch.onnx.export(
                module,
                (example,),
                str(onnx_path),
                dynamo=False,
                input_names=[INPUT_TENSOR],
                output_names=[OUTPUT_TENSOR],
                dynamic_axes={INPUT_TENSOR: {0: "batch"}, OUTPUT_TENSOR: {0: "batch"}},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
            )
    except Exception as error:
        raise ModelImportError(
            f"cannot convert {pt_path} to ONNX with torch {torch.__version__}'s TorchScript exporter "
            f"({type(error).__name__}: {error})"
        ) from error
    return _verify_conversion(torch, module, pt_path, onnx_path, size, num_tags)


def _verify_conversion(
    torch: Any, module: Any, pt_path: Path, onnx_path: Path, size: int, num_tags: int
) -> float:
    import numpy as np

    session = _onnx_session(onnx_path)
    # Two random images in one batch: also proves the exported batch axis is really dynamic
    # (the export example had batch 1).
    generator = torch.Generator().manual_seed(233)
    batch = torch.rand(2, 3, size, size, generator=generator, dtype=torch.float32)
    try:
        with torch.no_grad():
            expected = module(batch)
    except Exception as error:
        raise ModelImportError(
            f"{pt_path} does not run on a [2, 3, {size}, {size}] input (model_image_size {size}): "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(expected, torch.Tensor):
        raise ModelImportError(
            f"{pt_path} returns {type(expected).__name__}, expected one tensor of [batch, {num_tags}] logits"
        )
    reference = expected.detach().float().numpy()
    if reference.shape != (2, num_tags):
        raise ModelImportError(
            f"{pt_path} outputs shape {list(reference.shape)} for 2 images, but its tags file has "
            f"{num_tags} tags (expected [2, {num_tags}])"
        )
    try:
        (converted,) = session.run([OUTPUT_TENSOR], {INPUT_TENSOR: batch.numpy()})
    except Exception as error:
        raise ModelImportError(
            f"the ONNX conversion of {pt_path} does not run in ONNX Runtime: {error}"
        ) from error
    if converted.shape != reference.shape:
        raise ModelImportError(
            f"the ONNX conversion of {pt_path} outputs shape {list(converted.shape)}, TorchScript "
            f"{list(reference.shape)}"
        )
    difference = float(np.max(np.abs(converted.astype(np.float64) - reference)))
    if not difference < MAX_LOGIT_DIFFERENCE:  # also catches NaN
        raise ModelImportError(
            f"the ONNX conversion of {pt_path} disagrees with TorchScript: max |logit difference| "
            f"{difference:.3g} >= {MAX_LOGIT_DIFFERENCE:g}; not importing a model that would tag differently"
        )
    return difference


def _onnx_session(onnx_path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ModelImportError(
            f"verifying the ONNX conversion needs ONNX Runtime: {SKIER233_EXTRA_HINT} ({error})"
        ) from error
    try:
        return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ModelImportError(f"ONNX Runtime cannot load the converted model: {error}") from error


@contextmanager
def _quiet_torch() -> Iterator[None]:
    # torch.jit and the TorchScript-based exporter announce their deprecation on every call;
    # the importer pins the torch version it was verified with, so these say nothing to the user.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="no signature found", category=UserWarning)
        yield
