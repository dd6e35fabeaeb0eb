# Evaluates nix/module.nix with the real NixOS module system the way a NixOS system would, for
# tests/unit/test_nixos_module.py: `configuration` is a NixOS configuration (a module), `lib` the
# nixpkgs lib folder. Failed assertions throw, as nixos-rebuild does. The result is what the tests
# assert: the unit, users, tmpfiles rules and firewall ports.
{
  libPath,
  configuration,
}:
let
  lib = import libPath;
  # Packages the module uses; writeShellScript writes its script into the (test-local) store, so a
  # test can run it.
  pkgs = {
    writeShellScript = name: text: builtins.toFile name "#!/bin/sh\n${text}";
  };
  evaluated = lib.evalModules {
    modules = [
      ./nixos-options-stub.nix
      ../../nix/module.nix
      { _module.args.pkgs = pkgs; }
      configuration
    ];
  };
  inherit (evaluated) config;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
if failed != [ ] then
  throw "Failed assertions:\n- ${lib.concatStringsSep "\n- " failed}"
else
  {
    service = config.systemd.services.stash-vision or null;
    inherit (config.users) users groups;
    tmpfiles = config.systemd.tmpfiles.rules;
    firewall = config.networking.firewall.allowedTCPPorts;
  }
