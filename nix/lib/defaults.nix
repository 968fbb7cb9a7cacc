# Defaults for role and profile manifest fields, in one place.
#
# Two readers use this file: nix/lib/manifests.nix (the builtins-only export, which cannot see
# NixOS option defaults) and nix/modules/options.nix (the typed option declarations, whose
# `default`s come from here). Keeping them here means the exported JSON and a NixOS evaluation
# of the same role file agree; the drift test in test/nix/ checks the export against the
# committed JSON, and the zod schema in src/schemas/ checks every field.
{
  role = {
    schema_version = 1;
    services = [ ];
    ports = [ ];
    ingress = {
      allowed = false;
      default_enabled = false;
      target_port = null;
    };
    drives = [ ];
    vsock = {
      agent_port = 1024;
      handlers = [ "ping" "readiness" "service-status" ];
    };
    depends_on = [ ];
    sleep = {
      allowed = false;
      warm_allowed = false;
      min_runtime_s = 0;
      floor = 0;
    };
    secrets = [ ];
    connectors = [ ];
    lifecycle = {
      disposable = false;
      boot_timeout_s = 60;
      drain_timeout_s = 30;
      stop_timeout_s = 30;
      restart = "on-failure";
      max_restarts = 5;
      restart_window_s = 600;
    };
    pool_overrides = {
      sleep = false;
      ingress = false;
      connectors = false;
    };
  };

  # Defaults applied to each element of a role's lists.
  service = {
    args = [ ];
    ports = [ ];
    stop_timeout_s = 30;
  };
  port = {
    protocol = "tcp";
    exposure = "tenant";
  };
  drive = {
    read_only = false;
    required = false;
  };
  dependency = {
    condition = "ready";
    scope = "tenant";
  };
  secret = {
    generate = null;
  };
  connector = {
    secrets = [ ];
    state_on_data = false;
  };

  profile = {
    schema_version = 1;
    layers = [ "base" ];
    packages = [ ];
  };

  # The design's drive model, shared by the roles that use it. Device order is fixed:
  # vda is the immutable rootfs (never declared), vdb data, vdc secrets, vdd config.
  drives = {
    data = {
      name = "data";
      device = "vdb";
      mount = "/data";
      label = "mvm-data";
      read_only = false;
      persistence = "persistent";
    };
    secrets = {
      name = "secrets";
      device = "vdc";
      mount = "/run/secrets";
      label = "mvm-secrets";
      read_only = true;
      persistence = "ephemeral";
    };
    config = {
      name = "config";
      device = "vdd";
      mount = "/etc/mvm-config";
      label = "mvm-config";
      read_only = true;
      persistence = "versioned";
    };
  };
}
