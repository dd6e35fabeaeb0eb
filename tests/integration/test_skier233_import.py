"""Importing the real skier233 stand-in package (shared/models/skier233-standin: a TorchScript
ResNet-18 at 512x512 with its YAML, tags and category CSV) through the CLI, as a user does, then
checking the converted model against TorchScript and the original server's answers, and serving it
from the real embedded stack."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.server.preprocessing import preprocess
from stash_vision.server.tagging.aitagger_format.categories import load_category_dir
from stash_vision.v1 import inference_pb2_grpc
from tests.conftest import shared_dir, shared_file
from tests.golden import TOLERANCE, compare_tag_sets
from tests.integration.grpc_helpers import channel, infer, tensors
from tests.stack import Stack, cli, free_ports, stack_env, start_stack

pytestmark = [
    pytest.mark.integration,
    # torch.jit.load announces its deprecation; TorchScript is what skier233 ships.
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),
]

NAME = "vivid_galaxy_standin"
PACKAGE = "models/skier233-standin"
IMAGES = ("messi5.jpg", "baboon.jpg", "fruits.jpg")


@dataclass(frozen=True)
class Imported:
    workdir: Path
    entry: CatalogEntry
    weights: Path
    stdout: str
    seconds: float


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    workdir = tmp_path_factory.mktemp("skier233")
    data_dir = workdir / "data"
    env = stack_env(data_dir, shared_dir() / "models", free_ports(5), [NAME])
    started = time.perf_counter()
    result = cli(env, "models", "import-skier233", str(shared_file(f"{PACKAGE}/{NAME}.yaml")))
    seconds = time.perf_counter() - started
    assert result.returncode == 0, f"import failed:\n{result.stdout}\n{result.stderr}"
    entry = Catalog.load(extra=[data_dir / "model_repository"]).get(NAME)
    return Imported(workdir, entry, entry.weights_path(data_dir / "models"), result.stdout, seconds)


@pytest.fixture(scope="module")
def torchscript() -> torch.jit.ScriptModule:
    module: torch.jit.ScriptModule = torch.jit.load(
        str(shared_file(f"{PACKAGE}/{NAME}.pt")), map_location="cpu"
    )
    return module.eval()


@pytest.fixture(scope="module")
def session(imported: Imported) -> ort.InferenceSession:
    return ort.InferenceSession(str(imported.weights), providers=["CPUExecutionProvider"])


def contract_input(entry: CatalogEntry, image: str) -> np.ndarray:
    """A real image preprocessed per the entry's input contract, as the server does."""
    bgr = cv2.imread(str(shared_file(f"testdata/images/{image}")))
    tensor, _ = preprocess(bgr, entry.input)
    return tensor[None]


def tags_of(entry: CatalogEntry) -> list[str]:
    assert entry.tagger is not None and entry.tagger.tags_file is not None
    return (entry.folder / entry.tagger.tags_file).read_text(encoding="utf-8").splitlines()


def test_cli_reports_the_import(imported: Imported) -> None:
    assert (
        f"imported {NAME}: {NAME} version 1.9, identifier 950, 10 tags in actions, input 512x512"
        in imported.stdout
    )
    assert "restart `stash-vision serve` to load it" in imported.stdout
    print(f"\nCLI import of the stand-in (conversion + verification): {imported.seconds:.1f} s")


def test_entry_has_the_packages_tags_category_and_contract(imported: Imported) -> None:
    entry = imported.entry
    expected_tags = shared_file(f"{PACKAGE}/{NAME}.tags.txt").read_text().splitlines()
    assert len(expected_tags) == 10
    assert tags_of(entry) == expected_tags

    tagger = entry.tagger
    assert tagger is not None
    assert (tagger.display_name, tagger.identifier, tagger.version) == (NAME, 950, 1.9)
    assert (tagger.categories, tagger.threshold, tagger.activation) == (["actions"], 0.5, "sigmoid")
    assert entry.weights.imported

    contract = entry.input
    assert (contract.width, contract.height, contract.interpolation) == (512, 512, "cubic_antialias")
    # normalization_config: 0 is run as 1 (CLIP mean/std) by the original (`or 1`), so here too.
    assert (contract.mean, contract.std) == (
        (0.48145466, 0.4578275, 0.40821073),
        (0.26862954, 0.26130258, 0.27577711),
    )
    raw = yaml.safe_load((entry.folder / "catalog.yaml").read_text())
    assert raw["skier233"] == {"normalization_config": 0, "normalization_applied": 1}

    csv = entry.folder / "categories" / "actions.csv"
    assert csv.read_bytes() == shared_file(f"{PACKAGE}/categories/actions.csv").read_bytes()
    actions = load_category_dir(entry.folder / "categories").get("actions")
    assert actions is not None
    assert [actions.tags[t].renamed_tag for t in expected_tags] == [f"{t}_AI" for t in expected_tags]


def test_onnx_agrees_with_torchscript_on_real_images(
    imported: Imported, torchscript: torch.jit.ScriptModule, session: ort.InferenceSession
) -> None:
    batch = np.concatenate([contract_input(imported.entry, image) for image in IMAGES])
    with torch.no_grad():
        expected = torchscript(torch.from_numpy(batch)).numpy()
    (actual,) = session.run(["OUTPUT__0"], {"INPUT__0": batch})
    assert actual.shape == (len(IMAGES), 10)
    difference = float(np.abs(actual - expected).max())
    print(f"\nmax |logit difference| ONNX vs TorchScript on {len(IMAGES)} real images: {difference:.2e}")
    assert difference < 1e-3


def test_tags_agree_with_the_original_server(imported: Imported, session: ort.InferenceSession) -> None:
    """The original server's /process_images/ answer for the same images (golden), within its
    precision: it ran the model in bf16 autocast, so a tag within TOLERANCE (0.01) of the
    threshold may fall either way; every other tag must be on the same side."""
    golden = shared_dir() / "testdata" / "golden"
    request = json.loads((golden / "process_images_small.request.json").read_text())
    response = json.loads((golden / "process_images_small.response.json").read_text())
    threshold = request["threshold"]
    tags = tags_of(imported.entry)
    actions = load_category_dir(imported.entry.folder / "categories").get("actions")
    assert actions is not None
    renamed = {t.original_tag: t.renamed_tag for t in actions.tags.values()}
    compared = 0
    for path, result in zip(request["paths"], response["body"]["result"], strict=True):
        if "error" in result:
            continue
        bgr = cv2.imread(str(shared_dir() / path))
        tensor, _ = preprocess(bgr, imported.entry.input)
        (logits,) = session.run(["OUTPUT__0"], {"INPUT__0": tensor[None]})
        probabilities = dict(zip(tags, 1 / (1 + np.exp(-logits[0].astype(np.float64))), strict=True))
        ours = {renamed[t]: p for t, p in probabilities.items()}
        assert not compare_tag_sets(path, ours, set(result["actions"]), threshold), (path, result, ours)
        assert any(p > threshold + TOLERANCE for p in ours.values()), "each golden image has a clear tag"
        compared += 1
    assert compared == 2


@pytest.fixture(scope="module")
def served(imported: Imported) -> Iterator[Stack]:
    stack = start_stack(imported.workdir, shared_dir() / "models", models=[NAME])
    try:
        yield stack
    finally:
        stack.stop()


def test_the_stack_serves_the_imported_model(
    imported: Imported, served: Stack, session: ort.InferenceSession
) -> None:
    """Triton (embedded: the derived Python-backend config) loads the converted model and the
    server preprocesses per its contract: the Infer RPC equals ONNX Runtime on the same input."""
    stub = inference_pb2_grpc.InferenceServiceStub(channel(served.grpc_target))
    for image in IMAGES[:2]:
        response = infer(stub, NAME, path=str(shared_file(f"testdata/images/{image}")))
        output = tensors(response)["OUTPUT__0"]
        (expected,) = session.run(["OUTPUT__0"], {"INPUT__0": contract_input(imported.entry, image)})
        assert output.shape == (1, 10)
        np.testing.assert_allclose(output, expected, atol=1e-4, rtol=0)
