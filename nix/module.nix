# services.stash-vision: the AI inference server for Stash as a NixOS service (docs/nixos.md).
# `stash-vision serve` runs Triton (from the package's nvidia-pytriton), the gRPC server and the HTTP
# adapter as one systemd unit; before it starts, declared skier233 models are imported and the
# served models' weights are fetched and checked against their sha256.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    literalExpression
    mkEnableOption
    mkIf
    mkOption
    optional
    optionalAttrs
    optionals
    types
    ;

  cfg = config.services.stash-vision;

  # The catalogued model names (model_repository/*/catalog.yaml), written by scripts/gen-nix-models
  # and held equal to the catalog by tests/unit/test_nixos_module.py.
  catalogModels = lib.importJSON ./catalog-models.json;

  # A file outside the Nix store (the store is world-readable): secrets are passed by path only.
  secretPath = types.nullOr (types.pathWith { inStore = false; absolute = true; });

  exe = lib.getExe' cfg.package "stash-vision";
  # The skier233 importer converts TorchScript with torch, which the default package leaves out.
  importPackage =
    if cfg.package ? override then cfg.package.override { withSkier233 = true; } else cfg.package;

  stateDirectory =
    if lib.hasPrefix "/var/lib/" cfg.dataDir then lib.removePrefix "/var/lib/" cfg.dataDir else null;

  # Imported once per YAML (and categories folder): a stamp in the data directory remembers what
  # was imported, so a restart does not convert the model again.
  importScript = pkgs.writeShellScript "stash-vision-import-skier233" (
    ''
      set -eu
      stamps=${lib.escapeShellArg "${cfg.dataDir}/nixos-imports"}
      mkdir -p "$stamps"
    ''
    + lib.concatStrings (
      lib.mapAttrsToList (name: model: ''
        want=${lib.escapeShellArg "${model.yaml} ${toString model.categories}"}
        entry=${lib.escapeShellArg "${cfg.dataDir}/model_repository/${name}/catalog.yaml"}
        if [ ! -f "$entry" ] || [ "$(cat "$stamps/${name}" 2>/dev/null)" != "$want" ]; then
          ${lib.getExe' importPackage "stash-vision"} models import-skier233 ${lib.escapeShellArg "${model.yaml}"}${
            lib.optionalString (model.categories != null) " --categories ${lib.escapeShellArg "${model.categories}"}"
          }
          if [ ! -f "$entry" ]; then
            echo "error: ${model.yaml} was not imported as '${name}': name the attribute of services.stash-vision.skier233Models as the 'imported NAME' line above says" >&2
            exit 1
          fi
          printf '%s' "$want" > "$stamps/${name}"
        fi
      '') cfg.skier233Models
    )
  );

  # Paths the service must read that ProtectHome would hide.
  underHome = path: lib.any (prefix: lib.hasPrefix prefix path) [ "/home/" "/root/" "/run/user/" ];
  libraryUnderHome = lib.any underHome (map toString cfg.libraryRoots ++ lib.attrValues cfg.pathMappings);

  environment = {
    STASH_VISION_HOST = cfg.host;
    STASH_VISION_HTTP_PORT = toString cfg.port;
    STASH_VISION_GRPC_PORT = toString cfg.grpcPort;
    STASH_VISION_DATA_DIR = cfg.dataDir;
    STASH_VISION_FACE_PROFILE = cfg.faceProfile;
    # The processes' temporary files (decoded uploads) stay in the unit's private /tmp.
    TMPDIR = "/tmp";
  }
  # Empty serves every default model plus the face profile's, as without Nix.
  // optionalAttrs (cfg.models != [ ]) {
    STASH_VISION_MODELS = builtins.toJSON (cfg.models ++ lib.attrNames cfg.skier233Models);
  }
  // optionalAttrs (cfg.modelMirror != null) { STASH_VISION_MODEL_MIRROR = cfg.modelMirror; }
  // optionalAttrs (cfg.libraryRoots != [ ]) {
    STASH_VISION_LIBRARY_ROOTS = builtins.toJSON (map toString cfg.libraryRoots);
  }
  // optionalAttrs (cfg.pathMappings != { }) {
    STASH_VISION_PATH_MAPPINGS = builtins.toJSON cfg.pathMappings;
  }
  // optionalAttrs (cfg.stash.url != null) { STASH_VISION_STASH_URL = cfg.stash.url; }
  # %d is systemd's credentials directory: the keys are copied there by LoadCredential, readable
  # by this unit only, and never enter the environment or the store.
  // optionalAttrs (cfg.apiKeyFile != null) { STASH_VISION_API_KEY_FILE = "%d/api-key"; }
  // optionalAttrs (cfg.stash.apiKeyFile != null) {
    STASH_VISION_STASH_API_KEY_FILE = "%d/stash-api-key";
  }
  // optionalAttrs (cfg.acceleration == "cuda") { STASH_VISION_DEVICE = "cuda"; }
  // cfg.environment;

  # Character device classes of /proc/devices: nvidia-frontend is /dev/nvidia0…N, nvidiactl and
  # nvidia-modeset; nvidia-uvm is /dev/nvidia-uvm(-tools), which CUDA needs; nvidia-caps gates MIG.
  nvidiaDevices = [
    "char-nvidia-frontend rw"
    "char-nvidia-uvm rw"
    "char-nvidia-caps rw"
  ];

  hasStash = config.systemd.services ? stash;
in
{
  options.services.stash-vision = {
    enable = mkEnableOption "stash-vision, the AI inference server for Stash (AITagger, Stash Sense, AI Overhaul)";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The stash-vision package (the flake's `packages.<system>.default`).";
    };

    host = mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "0.0.0.0";
      description = "Address the HTTP adapter and the gRPC server bind to. Stash on another machine or in a container needs `0.0.0.0`.";
    };

    port = mkOption {
      type = types.port;
      default = 8000;
      description = "HTTP port: the AITagger plugin's `API_BASE_URL`, the Stash Sense and AI Overhaul plugins' URL, the dashboard at `/ui/`.";
    };

    grpcPort = mkOption {
      type = types.port;
      default = 50051;
      description = "gRPC port of the server (other tools, `stash-vision index build`).";
    };

    dataDir = mkOption {
      type = types.str;
      default = "/var/lib/stash-vision";
      description = "Weights, imported models, face indexes, jobs. Under /var/lib it is the unit's StateDirectory; elsewhere it is created by tmpfiles and made writable.";
    };

    models = mkOption {
      type = types.listOf (types.enum catalogModels);
      default = [ ];
      example = [
        "nudenet_320n"
        "open_nsfw"
      ];
      description = "Catalogued models to serve (fetched and verified before start). Empty serves every model served by default plus those the face profile needs. Imported skier233 models are added to a non-empty list.";
    };

    modelMirror = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "http://nas.lan/stash-vision-models";
      description = "Folder or file:// / http(s):// base laid out like shared/models, tried before the upstream URLs.";
    };

    skier233Models = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            yaml = mkOption {
              type = types.path;
              description = "The model's YAML (config/models/<name>.yaml); its .pt and .tags.txt beside it or in ../models.";
            };
            categories = mkOption {
              type = types.nullOr types.path;
              default = null;
              description = "Folder of category CSVs (default: categories/ beside the YAML, then ../post_processing/categories).";
            };
          };
        }
      );
      default = { };
      example = literalExpression ''{ gentler_river = { yaml = "/srv/skier/config/models/gentler_river.yaml"; }; }'';
      description = "Free skier233 AITagger models imported (converted to ONNX) before start, by the name stash-vision gives them: the file name lowercased, `[a-z0-9_]` only. Re-imported when the YAML or categories path changes.";
    };

    faceProfile = mkOption {
      type = types.str;
      default = "default";
      example = "stash-sense";
      description = "Face profile: `default`, `stash-sense`, or a `<name>.yaml` in `<dataDir>/face_profiles`.";
    };

    libraryRoots = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "/srv/media" ];
      description = "Media paths must lie under one of these (read-only for the service); empty allows any absolute path.";
    };

    pathMappings = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        "/data" = "/srv/media";
      };
      description = "Prefix rewrites from Stash's paths to this machine's.";
    };

    apiKeyFile = mkOption {
      type = secretPath;
      default = null;
      example = "/run/secrets/stash-vision-api-key";
      description = "File with the key callers must present (HTTP `x-api-key`, gRPC metadata). Passed with LoadCredential; never copied into the Nix store. Leave unset for the Stash Sense plugin, which sends no key.";
    };

    stash = {
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "http://127.0.0.1:9999";
        description = "Base URL of your Stash (scenes, images and galleries by id, sync-to-stash).";
      };
      apiKeyFile = mkOption {
        type = secretPath;
        default = null;
        example = "/run/secrets/stash-api-key";
        description = "File with Stash's API key (Settings → Security), passed with LoadCredential.";
      };
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        STASH_VISION_LOG_LEVEL = "DEBUG";
      };
      description = "Further STASH_VISION_* settings (README); they override the options above.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the HTTP port in the firewall (the gRPC port stays closed).";
    };

    acceleration = mkOption {
      type = types.nullOr (types.enum [ "cuda" ]);
      default = null;
      description = "`\"cuda\"`: run the models on the NVIDIA GPU (`STASH_VISION_DEVICE=cuda`) and let the unit reach the NVIDIA device nodes. Needs the NVIDIA driver (`hardware.nvidia`) on the host.";
    };

    user = mkOption {
      type = types.str;
      default = "stash-vision";
      description = "User the service runs as; created when left at `stash-vision`. Give it read access to your media (e.g. `users.users.stash-vision.extraGroups`).";
    };

    group = mkOption {
      type = types.str;
      default = "stash-vision";
      description = "Group the service runs as; created when left at `stash-vision`.";
    };
  };

  config = mkIf cfg.enable {
    assertions =
      lib.mapAttrsToList (name: _: {
        assertion = builtins.match "[a-z0-9_]+" name != null && !(lib.elem name catalogModels);
        message = "services.stash-vision.skier233Models.${name}: a name is lowercase [a-z0-9_] and not a catalogued model (${lib.concatStringsSep ", " catalogModels})";
      }) cfg.skier233Models
      ++ [
        {
          assertion = lib.hasPrefix "/" cfg.dataDir;
          message = "services.stash-vision.dataDir must be an absolute path, not ${cfg.dataDir}";
        }
      ];

    users.users = mkIf (cfg.user == "stash-vision") {
      stash-vision = {
        isSystemUser = true;
        inherit (cfg) group;
        home = cfg.dataDir;
      };
    };
    users.groups = mkIf (cfg.group == "stash-vision") { stash-vision = { }; };

    systemd.tmpfiles.rules = optional (
      stateDirectory == null
    ) "d ${cfg.dataDir} 0750 ${cfg.user} ${cfg.group} - -";

    systemd.services.stash-vision = {
      description = "stash-vision AI inference server for Stash";
      wantedBy = [ "multi-user.target" ];
      # Fetching weights needs the network; Stash's own unit first when this host runs it.
      after = [ "network-online.target" ] ++ optional hasStash "stash.service";
      wants = [ "network-online.target" ] ++ optional hasStash "stash.service";
      inherit environment;

      serviceConfig = {
        Type = "exec";
        User = cfg.user;
        Group = cfg.group;
        ExecStartPre =
          optional (cfg.skier233Models != { }) "${importScript}" ++ [ "${exe} models fetch" ];
        ExecStart = "${exe} serve";
        Restart = "on-failure";
        RestartSec = "10s";
        # The first start downloads and verifies hundreds of MB of weights before `serve`.
        TimeoutStartSec = "30min";
        WorkingDirectory = cfg.dataDir;
        StateDirectory = mkIf (stateDirectory != null) stateDirectory;
        StateDirectoryMode = "0750";
        ReadWritePaths = [ cfg.dataDir ];
        LoadCredential =
          optional (cfg.apiKeyFile != null) "api-key:${cfg.apiKeyFile}"
          ++ optional (cfg.stash.apiKeyFile != null) "stash-api-key:${cfg.stash.apiKeyFile}";
        UMask = "0027";

        # Hardening. /dev/shm (the Triton Python backend's shared memory with its model runners)
        # is untouched by PrivateTmp (only /tmp and /var/tmp) and by ProtectSystem (which leaves
        # /dev writable), and a private /dev bind-mounts the host's; RemoveIPC deletes what a crash
        # left there when the unit stops.
        NoNewPrivileges = true;
        PrivateTmp = true;
        ProtectSystem = "strict";
        ProtectHome = if libraryUnderHome then "read-only" else true;
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        DevicePolicy = "closed";
        # Only the NVIDIA nodes, and only when accelerated; a private /dev otherwise.
        DeviceAllow = optionals (cfg.acceleration == "cuda") nvidiaDevices;
        PrivateDevices = cfg.acceleration == null;
        CapabilityBoundingSet = "";
        LockPersonality = true;
        ProtectClock = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        RemoveIPC = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        SystemCallArchitectures = "native";
      };
    };

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [ cfg.port ];
  };
}
