{
  description = "stash-vision: AI inference server for Stash (AITagger tagging, face identification) on NVIDIA Triton";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      # The embedded Triton (nvidia-pytriton's tritonserver) is an x86-64 Linux binary.
      systems = [ "x86_64-linux" ];
      forAllSystems = nixpkgs.lib.genAttrs systems;
    in
    {
      packages = forAllSystems (system: rec {
        stash-vision = nixpkgs.legacyPackages.${system}.callPackage ./nix/package.nix { };
        default = stash-vision;
      });

      overlays.default = final: _prev: {
        stash-vision = final.callPackage ./nix/package.nix { };
      };

      # services.stash-vision, with this flake's package as the default.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.stash-vision.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
    };
}
