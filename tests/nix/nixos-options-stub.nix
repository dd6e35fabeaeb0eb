# The NixOS options nix/module.nix sets, declared with the types NixOS gives them (nixos/modules/
# system/boot/systemd.nix, config/users-groups.nix, services/networking/firewall.nix), so the real
# module system (../shared/nixpkgs-lib) type-checks and merges what the module defines. No
# freeform types: an option the module sets that is not declared here is an evaluation error.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  # NixOS' unitOption: a scalar or a list of them; lists of several definitions concatenate.
  unitScalar = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
  ];
  unitOption = types.either unitScalar (types.listOf unitScalar);
  strings = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
  service = types.submodule {
    options = {
      description = mkOption { type = types.str; };
      wantedBy = strings;
      after = strings;
      wants = strings;
      requires = strings;
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
        default = { };
      };
      serviceConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
    };
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf (
        types.submodule {
          options.assertion = mkOption { type = types.bool; };
          options.message = mkOption { type = types.str; };
        }
      );
      default = [ ];
    };
    users.users = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            isSystemUser = mkOption {
              type = types.bool;
              default = false;
            };
            group = mkOption { type = types.str; };
            home = mkOption { type = types.str; };
            extraGroups = strings;
          };
        }
      );
      default = { };
    };
    users.groups = mkOption {
      type = types.attrsOf (types.submodule { });
      default = { };
    };
    systemd.services = mkOption {
      type = types.attrsOf service;
      default = { };
    };
    systemd.tmpfiles.rules = strings;
    networking.firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };
  };
}
