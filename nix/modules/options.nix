# Option declarations for `mvm.role` and `mvm.profile`, and the read-only manifests derived
# from them.
#
# Every option mirrors one field of the zod schemas in src/schemas/role-manifest.ts and
# src/schemas/profile-manifest.ts: same snake_case name, same enum values, ranges and patterns,
# same nullability. Defaults come from ../lib/defaults.nix, which the builtins-only export
# (../lib/export-manifests.nix) also applies, so a role file means the same thing under both
# readers. Fields without a default there are required here.
#
# Cross-field rules (a service names a declared port, and so on) live in ./assertions.nix.
{ config, lib, ... }:
let
  inherit (lib) mkOption types literalExpression;

  defaults = import ../lib/defaults.nix;

  # Scalar types, named after their zod counterparts.

  # ids.ts ID_PATTERN with ID_MAX_LENGTH 32 folded into the pattern: one character, or a
  # letter/digit, up to 30 inner characters, and a letter/digit.
  idPattern = "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?";
  matching =
    what: pattern:
    types.strMatching pattern
    // {
      description = "${what} (string matching ${pattern})";
    };

  localName = matching "name" idPattern;
  roleName = matching "role name" idPattern;
  profileName = matching "profile name" idPattern;
  # 1-64 characters, first a letter or digit.
  secretName = matching "secret name" "[a-z0-9][a-z0-9._-]{0,63}";
  # z.string().min(1); Nix regexes let `.` match newlines too.
  nonEmptyString = types.strMatching ".+" // {
    description = "non-empty string";
  };

  seconds = types.ints.between 0 86400;
  positiveSeconds = types.ints.between 1 86400;

  readinessKinds = [
    "tcp"
    "http"
    "exec"
    "agent"
    "openclaw-handshake"
    "openclaw-node-connected"
  ];

  configFormats = [
    "openclaw-gateway"
    "openclaw-node"
  ];

  vsockHandlers = [
    "ping"
    "readiness"
    "service-status"
    "drain"
    "post-restore"
    "config-reload"
    "secrets-reload"
    "connector-status"
    "job-status"
    "openclaw-setup-code"
  ];

  # Element types of the role's lists. Option defaults come from defaults.<element>.

  readinessModule = {
    options = {
      kind = mkOption {
        type = types.enum readinessKinds;
        description = ''
          How readiness is decided:
          - `tcp`: a TCP connect to `port` succeeds;
          - `http`: an HTTP GET of `path` on `port` answers `expect_status`;
          - `exec`: `command` exits 0;
          - `agent`: the guest agent reports the service ready (for services without a network endpoint);
          - `openclaw-handshake`: OpenClaw's `/readyz` answers 200 on `port`, then a WebSocket `connect`
            as `client_role` with `scopes` and the token from secret `token_secret` gets `hello-ok`;
          - `openclaw-node-connected`: an OpenClaw node host is connected to its gateway (the role's
            first `depends_on`): the guest agent finds hello-ok as its last connection event and an
            established TCP connection to the gateway.

          Fields that do not belong to the kind must stay `null`; ./assertions.nix checks both directions.
        '';
      };
      port = mkOption {
        type = types.nullOr localName;
        default = null;
        description = "Name of the port (from `mvm.role.ports`) to probe. Required for `tcp` and `http`, `null` otherwise.";
      };
      path = mkOption {
        type = types.nullOr (matching "absolute HTTP path" "/.*");
        default = null;
        example = "/readyz";
        description = "HTTP path to request. Required for `http`, `null` otherwise.";
      };
      expect_status = mkOption {
        type = types.nullOr (types.ints.between 100 599);
        default = null;
        example = 200;
        description = "HTTP status that means ready. Required for `http`, `null` otherwise.";
      };
      command = mkOption {
        type = types.nullOr (types.nonEmptyListOf nonEmptyString);
        default = null;
        example = [
          "pg_isready"
          "-q"
        ];
        description = "Command (program and arguments, no shell) whose exit status 0 means ready. Required for `exec`, `null` otherwise.";
      };
      token_secret = mkOption {
        type = types.nullOr nonEmptyString;
        default = null;
        example = "gateway-token";
        description = "Secret (from `mvm.role.secrets`) holding the gateway token. Required for `openclaw-handshake`, `null` otherwise.";
      };
      client_role = mkOption {
        type = types.nullOr (types.enum [ "operator" ]);
        default = null;
        description = "OpenClaw role the probe connects as. Required for `openclaw-handshake`, `null` otherwise.";
      };
      scopes = mkOption {
        type = types.nullOr (types.listOf nonEmptyString);
        default = null;
        example = [ "operator.read" ];
        description = "OpenClaw operator scopes the probe asks for. Required for `openclaw-handshake`, `null` otherwise.";
      };
      timeout_s = mkOption {
        type = positiveSeconds;
        description = "Give up (the service is not ready) after this many seconds.";
      };
      interval_s = mkOption {
        type = positiveSeconds;
        description = "Seconds between probes.";
      };
    };
  };

  serviceModule = {
    options = {
      name = mkOption {
        type = localName;
        description = "Service name; also the name of its systemd unit in the guest.";
      };
      description = mkOption {
        type = nonEmptyString;
        description = "What the service does (one line).";
      };
      program = mkOption {
        type = nonEmptyString;
        example = "openclaw";
        description = "Program name as installed in the guest image by the profile (found in the system profile's `bin`).";
      };
      args = mkOption {
        type = types.listOf types.str;
        default = defaults.service.args;
        description = "Arguments passed to `program`, without a shell.";
      };
      ports = mkOption {
        type = types.listOf localName;
        default = defaults.service.ports;
        description = "Names of ports (from `mvm.role.ports`) this service listens on.";
      };
      readiness = mkOption {
        type = types.submodule readinessModule;
        description = "How the guest agent decides the service is ready; a tagged record keyed by `kind`.";
      };
      stop_timeout_s = mkOption {
        type = positiveSeconds;
        default = defaults.service.stop_timeout_s;
        description = "Seconds the service gets to stop before it is killed.";
      };
      config = mkOption {
        type = types.nullOr (
          types.submodule {
            options = {
              format = mkOption {
                type = types.enum configFormats;
                description = "The generator the control plane renders the file with: `openclaw-gateway` or `openclaw-node`.";
              };
              file = mkOption {
                type = matching "plain file name" "[A-Za-z0-9][A-Za-z0-9._-]*";
                example = "openclaw.json";
                description = "File name on the config drive.";
              };
            };
          }
        );
        default = null;
        description = "The generated config file this service reads from the config drive; `null` when it needs none (the key is then left out of the manifest).";
      };
    };
  };

  portModule = {
    options = {
      name = mkOption {
        type = localName;
        description = "Port name, referenced by services, readiness checks and ingress.";
      };
      port = mkOption {
        type = types.ints.between 1 65535;
        description = "Port number inside the guest.";
      };
      protocol = mkOption {
        type = types.enum [
          "tcp"
          "udp"
        ];
        default = defaults.port.protocol;
        description = "Transport protocol.";
      };
      exposure = mkOption {
        type = types.enum [
          "tenant"
          "local"
        ];
        default = defaults.port.exposure;
        description = ''
          `tenant`: reachable from the tenant network only; `local`: inside the guest only.
          External reach is only through `mvm.role.ingress`.
        '';
      };
    };
  };

  driveModule = {
    options = {
      name = mkOption {
        type = localName;
        description = "Drive name (for example `data`, `secrets`, `config`).";
      };
      device = mkOption {
        type = matching "virtio block device vdb..vdz" "vd[b-z]";
        description = "Guest block device. `vda` is the immutable root image and is never declared.";
      };
      mount = mkOption {
        type = matching "absolute guest path" "/[A-Za-z0-9._/-]*";
        description = "Where the drive is mounted in the guest.";
      };
      label = mkOption {
        type = matching "ext4 label" "[a-z0-9-]{1,16}";
        description = "Filesystem label (1-16 characters, the ext4 limit); the guest mounts the drive by this label.";
      };
      read_only = mkOption {
        type = types.bool;
        default = defaults.drive.read_only;
        description = "Mount the drive read-only.";
      };
      required = mkOption {
        type = types.bool;
        default = defaults.drive.required;
        description = "Preflight refuses to boot an instance whose required drive is missing.";
      };
      persistence = mkOption {
        type = types.enum [
          "persistent"
          "ephemeral"
          "versioned"
          "disposable"
        ];
        description = ''
          Lifetime of the drive's image on the host:
          - `persistent`: kept across sleep, wake and restart;
          - `ephemeral`: rebuilt at every boot and wake, removed at stop;
          - `versioned`: one image per config_version;
          - `disposable`: removed with the instance.
        '';
      };
    };
  };

  dependencyModule = {
    options = {
      role = mkOption {
        type = roleName;
        description = "The role this role depends on.";
      };
      condition = mkOption {
        type = types.enum [
          "ready"
          "running"
        ];
        default = defaults.dependency.condition;
        description = "Start once an instance of `role` is `ready` (readiness passed) or merely `running`.";
      };
      scope = mkOption {
        type = types.enum [ "tenant" ];
        default = defaults.dependency.scope;
        description = "Where the dependency is looked up; only the role's own tenant for now.";
      };
    };
  };

  connectorModule = {
    options = {
      name = mkOption {
        type = localName;
        description = "Connector name (for example a messaging channel).";
      };
      description = mkOption {
        type = nonEmptyString;
        description = "What the connector does (one line).";
      };
      secrets = mkOption {
        type = types.listOf secretName;
        default = defaults.connector.secrets;
        description = "Secrets that must be present on the secrets drive before the connector is enabled.";
      };
      state_on_data = mkOption {
        type = types.bool;
        default = defaults.connector.state_on_data;
        description = "The connector keeps login or channel state on the data drive.";
      };
    };
  };

  secretModule = {
    options = {
      name = mkOption {
        type = secretName;
        description = "File name of the secret on the secrets drive.";
      };
      description = mkOption {
        type = nonEmptyString;
        description = "What the secret is for (one line; never its value).";
      };
      generate = mkOption {
        type = types.nullOr (types.enum [ "token" "openclaw-setup-code" ]);
        default = defaults.secret.generate;
        description = "`token`: the control plane mints it on first need (random, 256 bits); `openclaw-setup-code`: a single-use OpenClaw node setup code, minted at every boot and wake by the tenant gateway this role depends on (never stored); `null`: an operator supplies it.";
      };
    };
  };

  roleModule = {
    options = {
      schema_version = mkOption {
        type = types.enum [ 1 ];
        default = defaults.role.schema_version;
        description = "Version of the role manifest format.";
      };
      name = mkOption {
        type = roleName;
        description = "Role name; the file is nix/roles/<name>.nix.";
      };
      description = mkOption {
        type = nonEmptyString;
        description = "What instances of this role do.";
      };
      profiles = {
        default = mkOption {
          type = profileName;
          description = "Profile used when a pool does not choose one; must be in `allowed`.";
        };
        allowed = mkOption {
          type = types.nonEmptyListOf profileName;
          description = "Profiles a pool may choose for this role.";
        };
      };
      services = mkOption {
        type = types.listOf (types.submodule serviceModule);
        default = defaults.role.services;
        description = "Services the guest runs, one systemd unit each.";
      };
      ports = mkOption {
        type = types.listOf (types.submodule portModule);
        default = defaults.role.ports;
        description = "Ports the role's services listen on.";
      };
      ingress = {
        allowed = mkOption {
          type = types.bool;
          default = defaults.role.ingress.allowed;
          description = "May a pool turn on external ingress for this role.";
        };
        default_enabled = mkOption {
          type = types.bool;
          default = defaults.role.ingress.default_enabled;
          description = "Ingress is on unless the pool turns it off (requires `allowed`).";
        };
        target_port = mkOption {
          type = types.nullOr localName;
          default = defaults.role.ingress.target_port;
          description = "Name of the port ingress forwards to (WSS terminates on the host). Required when `allowed`.";
        };
      };
      drives = mkOption {
        type = types.listOf (types.submodule driveModule);
        default = defaults.role.drives;
        description = ''
          Per-instance drives besides the root image. The usual set is in
          `(import nix/lib/defaults.nix).drives`: `data` (vdb), `secrets` (vdc), `config` (vdd).
        '';
      };
      vsock = {
        agent_port = mkOption {
          type = types.ints.between 1024 65535;
          default = defaults.role.vsock.agent_port;
          description = "vsock port the guest agent listens on.";
        };
        handlers = mkOption {
          type = types.listOf (types.enum vsockHandlers);
          default = defaults.role.vsock.handlers;
          description = "Guest agent control verbs this role enables (the vsock protocol's closed vocabulary).";
        };
      };
      depends_on = mkOption {
        type = types.listOf (types.submodule dependencyModule);
        default = defaults.role.depends_on;
        description = "Roles that must be up in the same tenant before this one starts.";
      };
      sleep = {
        allowed = mkOption {
          type = types.bool;
          default = defaults.role.sleep.allowed;
          description = "May instances of this role be snapshotted to sleep at all.";
        };
        warm_allowed = mkOption {
          type = types.bool;
          default = defaults.role.sleep.warm_allowed;
          description = "May instances be paused with memory resident (warm).";
        };
        min_runtime_s = mkOption {
          type = seconds;
          default = defaults.role.sleep.min_runtime_s;
          description = "An instance runs at least this long after boot or wake before it may warm or sleep.";
        };
        floor = mkOption {
          type = types.ints.between 0 1000;
          default = defaults.role.sleep.floor;
          description = "Running instances of this role per tenant that are never slept or warmed.";
        };
      };
      secrets = mkOption {
        type = types.listOf (types.submodule secretModule);
        default = defaults.role.secrets;
        description = "Secrets every instance needs on its secrets drive; preflight refuses to start without them.";
      };
      connectors = mkOption {
        type = types.listOf (types.submodule connectorModule);
        default = defaults.role.connectors;
        description = "Connectors (for example messaging channels) a pool may enable.";
      };
      lifecycle = {
        disposable = mkOption {
          type = types.bool;
          default = defaults.role.lifecycle.disposable;
          description = "Runs to completion and is destroyed; keeps no tenant state.";
        };
        boot_timeout_s = mkOption {
          type = positiveSeconds;
          default = defaults.role.lifecycle.boot_timeout_s;
          description = "Seconds from boot until every service must be ready.";
        };
        drain_timeout_s = mkOption {
          type = positiveSeconds;
          default = defaults.role.lifecycle.drain_timeout_s;
          description = "Seconds a drain may take before the instance is stopped anyway.";
        };
        stop_timeout_s = mkOption {
          type = positiveSeconds;
          default = defaults.role.lifecycle.stop_timeout_s;
          description = "Seconds a guest shutdown may take before the VM is killed.";
        };
        restart = mkOption {
          type = types.enum [
            "always"
            "on-failure"
            "never"
          ];
          default = defaults.role.lifecycle.restart;
          description = "When the control plane restarts a stopped instance.";
        };
        max_restarts = mkOption {
          type = types.ints.between 0 100;
          default = defaults.role.lifecycle.max_restarts;
          description = "Restarts allowed within `restart_window_s` before the instance is left failed.";
        };
        restart_window_s = mkOption {
          type = positiveSeconds;
          default = defaults.role.lifecycle.restart_window_s;
          description = "Window, in seconds, over which `max_restarts` is counted.";
        };
      };
      pool_overrides = {
        sleep = mkOption {
          type = types.bool;
          default = defaults.role.pool_overrides.sleep;
          description = "Pools may raise `min_runtime_s` and the sleep floor.";
        };
        ingress = mkOption {
          type = types.bool;
          default = defaults.role.pool_overrides.ingress;
          description = "Pools may turn ingress on or off.";
        };
        connectors = mkOption {
          type = types.bool;
          default = defaults.role.pool_overrides.connectors;
          description = "Pools choose which declared connectors to enable.";
        };
      };
    };
  };

  resourcesModule = {
    options = {
      vcpus = mkOption {
        type = types.ints.between 1 32;
        description = "Virtual CPUs.";
      };
      mem_mib = mkOption {
        type = types.ints.between 128 262144;
        description = "Guest memory in MiB.";
      };
      data_disk_mib = mkOption {
        type = types.ints.between 0 4194304;
        description = "Size of the data drive in MiB.";
      };
    };
  };

  profileModule = {
    options = {
      schema_version = mkOption {
        type = types.enum [ 1 ];
        default = defaults.profile.schema_version;
        description = "Version of the profile manifest format.";
      };
      name = mkOption {
        type = profileName;
        description = "Profile name; the file is nix/profiles/<name>.nix.";
      };
      description = mkOption {
        type = nonEmptyString;
        description = "What the profile provides.";
      };
      layers = mkOption {
        type = types.listOf (matching "layer name" "[a-z0-9-]+");
        default = defaults.profile.layers;
        description = "Runtime layers, lowest first (for example `base`, `python`).";
      };
      packages = mkOption {
        type = types.listOf nonEmptyString;
        default = defaults.profile.packages;
        example = [
          "coreutils"
          "python3"
        ];
        description = "Package attribute names (in `pkgs`) installed in the guest.";
      };
      resources = {
        defaults = mkOption {
          type = types.submodule resourcesModule;
          description = "Resources an instance gets unless its pool asks for more.";
        };
        minimums = mkOption {
          type = types.submodule resourcesModule;
          description = "The least a pool may give an instance with this profile.";
        };
      };
    };
  };

  # Submodule values carry the module system's `_module`; drop it so the value is plain data.
  toData =
    value:
    if builtins.isAttrs value then
      builtins.mapAttrs (_: toData) (removeAttrs value [ "_module" ])
    else if builtins.isList value then
      map toData value
    else
      value;

  # A readiness check carries only its own kind's fields (the zod union is strict).
  readinessData = readiness: lib.filterAttrs (_: v: v != null) readiness;

  roleData =
    role:
    let
      data = toData role;
    in
    data
    // {
      # A service without a generated config has no `config` key (the zod field is optional).
      services = map (
        service:
        removeAttrs service (if service.config == null then [ "config" ] else [ ])
        // {
          readiness = readinessData service.readiness;
        }
      ) data.services;
    };
in
{
  options.mvm = {
    role = mkOption {
      type = types.submodule roleModule;
      description = ''
        The role this guest runs: a kind of microVM, its services, ports, drives and policies.
        Set by one file in `nix/roles/`; the runtime reads the exported manifest, never Nix.
      '';
    };

    profile = mkOption {
      type = types.submodule profileModule;
      description = ''
        The profile baked into this guest: runtime layers, base packages and the resources it
        expects. Set by one file in `nix/profiles/`.
      '';
    };

    manifest = mkOption {
      type = types.attrsOf types.anything;
      readOnly = true;
      default = roleData config.mvm.role;
      defaultText = literalExpression "config.mvm.role as plain data";
      description = ''
        The role manifest as JSON-ready data (`schema_version` included): the value of
        `mvm.role` without the module system's bookkeeping, and with each readiness check
        reduced to its kind's fields. It equals the builtins-only export of the same role file
        (`nix/lib/export-manifests.nix`) and validates against `RoleManifest` in
        `src/schemas/role-manifest.ts`.
      '';
    };

    profileManifest = mkOption {
      type = types.attrsOf types.anything;
      readOnly = true;
      default = toData config.mvm.profile;
      defaultText = literalExpression "config.mvm.profile as plain data";
      description = ''
        The profile manifest as JSON-ready data; validates against `ProfileManifest` in
        `src/schemas/profile-manifest.ts`.
      '';
    };
  };
}
