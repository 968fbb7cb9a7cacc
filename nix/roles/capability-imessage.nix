# capability-imessage: placeholder for an iMessage bridge. Isolated per tenant like every role;
# it uses the mounted config and secrets model and exposes nothing yet. It declares only the
# guest agent so it can be booted, drained and observed while the bridge itself is designed.
let
  drives = (import ../lib/defaults.nix).drives;
in
{
  mvm.role = {
    name = "capability-imessage";
    description = "Placeholder for a per-tenant iMessage capability; mounts config and secrets, exposes nothing.";
    profiles = {
      default = "minimal";
      allowed = [ "minimal" "custom" ];
    };
    services = [ ];
    ports = [ ];
    drives = [
      (drives.data // { required = false; })
      (drives.secrets // { required = true; })
      (drives.config // { required = true; })
    ];
    vsock = {
      agent_port = 1024;
      handlers = [ "ping" "readiness" "service-status" "drain" "post-restore" "config-reload" "secrets-reload" ];
    };
    depends_on = [
      {
        role = "gateway";
        condition = "ready";
        scope = "tenant";
      }
    ];
    sleep = {
      allowed = true;
      warm_allowed = true;
      min_runtime_s = 60;
      floor = 0;
    };
    secrets = [
      {
        name = "imessage-credentials";
        description = "Credentials of the tenant's iMessage bridge account; supplied by an operator.";
      }
    ];
    lifecycle = {
      disposable = false;
      boot_timeout_s = 60;
      drain_timeout_s = 30;
      stop_timeout_s = 15;
      restart = "on-failure";
      max_restarts = 3;
      restart_window_s = 600;
    };
    pool_overrides = {
      sleep = true;
      ingress = false;
      connectors = false;
    };
  };
}
