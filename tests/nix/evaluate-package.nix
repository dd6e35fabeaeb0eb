# Calls nix/package.nix with stand-ins for the nixpkgs parts it uses (no nixpkgs here), for
# tests/unit/test_nixos_module.py: every builder returns its arguments, every Python package is
# its name, so the test sees what the derivation asks for — the dependencies by nixpkgs attribute,
# the wheels it fetches, the Python set's numpy — without building anything.
{
  libPath,
  withSkier233,
  pythonPackageNames,
}:
let
  lib = import libPath;
  base = lib.genAttrs pythonPackageNames (name: name) // {
    buildPythonPackage = args: args;
    buildPythonApplication = args: args;
  };
  python3 = {
    override =
      { packageOverrides, ... }:
      {
        pkgs = lib.fix (self: base // packageOverrides self base);
      };
  };
  package = import ../../nix/package.nix {
    inherit lib python3 withSkier233;
    stdenv.cc.cc.lib = "libstdc++";
    fetchPypi = args: args;
    autoPatchelfHook = "autoPatchelfHook";
    zlib = "zlib";
  };
  name = dependency: if builtins.isString dependency then dependency else "wheel:${dependency.pname}";
  wheel = dependency: {
    inherit (dependency.src) pname version hash platform python abi dist format;
    dependencies = map name (dependency.dependencies or [ ]);
  };
in
{
  inherit (package)
    pname
    version
    pyproject
    pythonRemoveDeps
    pythonImportsCheck
    ;
  build-system = map name package.build-system;
  dependencies = map name package.dependencies;
  wheels = map wheel (lib.filter (d: !builtins.isString d) package.dependencies);
  mainProgram = package.meta.mainProgram;
}
