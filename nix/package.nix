# The stash-vision package: the project's pyproject built with buildPythonApplication, with the
# `embedded` extra (Triton's binary from NVIDIA's PyTriton wheel, ONNX Runtime) so that
# `stash-vision serve` runs the whole stack. docs/nixos.md says what of this was verified: it was
# written and parsed (`nix-instantiate --parse`), NOT built — no nixpkgs was at hand.
{
  lib,
  stdenv,
  python3,
  fetchPypi,
  autoPatchelfHook,
  zlib,
  # `stash-vision models import-skier233` converts TorchScript with torch (the `skier233` extra).
  withSkier233 ? false,
}:
let
  # PyTriton's Python-backend stub is built against numpy 1.x (pyproject.toml pins numpy<2), so the
  # whole Python set uses numpy 1; the numpy-dependent packages are rebuilt against it.
  python = python3.override {
    self = python;
    packageOverrides = self: super: {
      numpy = super.numpy_1;
    };
  };
  py = python.pkgs;

  # A binary wheel from PyPI (hashes: sha256 of the wheels pip downloaded, checked 2026-12-07), its
  # native libraries patched to the store's by autoPatchelfHook.
  wheel =
    {
      pname,
      version,
      tag,
      platform,
      hash,
      description,
      homepage,
      ...
    }@args:
    py.buildPythonPackage (
      removeAttrs args [
        "tag"
        "platform"
        "hash"
        "description"
        "homepage"
      ]
      // {
        format = "wheel";
        src = fetchPypi {
          inherit pname version platform hash;
          format = "wheel";
          dist = tag.python;
          inherit (tag) python abi;
        };
        nativeBuildInputs = [ autoPatchelfHook ];
        buildInputs = [ stdenv.cc.cc.lib ] ++ (args.buildInputs or [ ]);
        meta = {
          inherit description homepage;
          license = lib.licenses.asl20;
          platforms = [ "x86_64-linux" ];
        };
      }
    );

  # Not in nixpkgs. Only its files are used (pytriton/tritonserver: the tritonserver binary, the
  # Python backend and its per-Python stubs; stash_vision/embedded/triton_binary.py), never its
  # Python API, so its own requirements (pyzmq, sh, typer, …) are not installed.
  nvidia-pytriton = wheel {
    pname = "nvidia_pytriton";
    version = "0.7.0";
    tag = {
      python = "py3";
      abi = "none";
    };
    platform = "manylinux_2_35_x86_64";
    hash = "sha256-IfBj/5O7Qm0MBrelXn6578/mLA3d2akI6Yd+GHEBKN8=";
    buildInputs = [ zlib ];
    # The stubs link libpython of their Python version; triton_binary.py puts this interpreter's
    # libpython on LD_LIBRARY_PATH when it starts Triton, and stubs of other versions go unused.
    autoPatchelfIgnoreMissingDeps = [ "libpython3*" ];
    dontCheckRuntimeDeps = true;
    pythonImportsCheck = [ ];
    description = "NVIDIA PyTriton (for the tritonserver binary it ships)";
    homepage = "https://github.com/triton-inference-server/pytriton";
  };

  # Spotify's HNSW library (face indexes in Stash Sense's format); the abi3 wheel fits Python ≥ 3.12.
  voyager = wheel {
    pname = "voyager";
    version = "2.2.3";
    tag = {
      python = "cp312";
      abi = "abi3";
    };
    platform = "manylinux_2_17_x86_64.manylinux2014_x86_64";
    hash = "sha256-T/kMt/s66FIshre9YHSrQUFl3H6SdXTpSkFW8iJyz68=";
    dependencies = [ py.numpy ];
    pythonImportsCheck = [ "voyager" ];
    description = "Approximate nearest-neighbour search (HNSW) from Spotify";
    homepage = "https://github.com/spotify/voyager";
  };
in
py.buildPythonApplication {
  pname = "stash-vision";
  version = "0.1.0";
  pyproject = true;

  # The project tree without what git ignores or what a build needs not see.
  src = lib.cleanSourceWith {
    src = lib.cleanSource ../.;
    filter =
      path: _type:
      !(lib.elem (baseNameOf path) [
        ".venv"
        "build"
        "stash_vision.egg-info"
        "tests"
        "bench"
      ]);
  };

  build-system = [ py.setuptools ];

  dependencies =
    (with py; [
      grpcio
      grpcio-health-checking
      grpcio-reflection
      protobuf
      tritonclient
      numpy
      opencv4
      pydantic
      pydantic-settings
      pyyaml
      fastapi
      uvicorn
      websockets
      prometheus-client
      pillow
      av
      httpx
      jinja2
      # the `embedded` extra; its CUDA execution provider comes with `nixpkgs.config.cudaSupport`
      onnxruntime
      # reduced-precision variants (bf16 on CPUs that have it): docs/precision.md
      openvino
    ])
    ++ [
      voyager
      nvidia-pytriton
    ]
    ++ lib.optionals withSkier233 (
      with py;
      [
        torch
        onnx
      ]
    );

  # nixpkgs' versions differ from the pins (grpcio, protobuf, opencv), and its opencv4 provides cv2
  # under another distribution name than opencv-python-headless.
  pythonRelaxDeps = true;
  pythonRemoveDeps = [
    "opencv-python-headless"
    "nvidia-pytriton"
  ];

  # The suite needs the shared models and media (scripts/test); the import check stands in.
  doCheck = false;
  pythonImportsCheck = [
    "stash_vision.cli"
    "stash_vision.server.app"
    "stash_vision.adapter.app"
  ];

  meta = {
    description = "AI inference server for Stash: AITagger-compatible tagging and face identification on NVIDIA Triton";
    license = lib.licenses.agpl3Plus;
    mainProgram = "stash-vision";
    # The embedded Triton is an x86-64 glibc binary.
    platforms = [ "x86_64-linux" ];
  };
}
