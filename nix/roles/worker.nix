# worker: runs OpenClaw work for a tenant as an OpenClaw node host that dials its tenant's
# gateway. No external ports; starts only once the tenant's gateway is ready.
let
  drives = (import ../lib/defaults.nix).drives;
in
{
  mvm.role = {
    name = "worker";
    description = "Runs OpenClaw work for one tenant as a node host connected to the tenant's gateway; no external ports.";
    profiles = {
      default = "openclaw-worker";
      allowed = [ "openclaw-worker" "python" "custom" ];
    };
    services = [
      {
        name = "openclaw-node";
        description = "OpenClaw node host; dials the tenant gateway over the tenant network.";
        program = "openclaw";
        # The gateway address, port and the one-time setup code are added at launch from the
        # config drive (depends_on endpoints) and the secrets drive.
        args = [ "node" "run" ];
        ports = [ ];
        config = {
          format = "openclaw-node";
          file = "openclaw.json";
        };
        # Running is not enough: the node host is ready once it is connected to its gateway (its
        # hello-ok, and an established connection to the gateway), as the guest agent sees it.
        readiness = {
          kind = "openclaw-node-connected";
          timeout_s = 120;
          interval_s = 2;
        };
        stop_timeout_s = 15;
      }
    ];
    ports = [ ];
    drives = [
      (drives.data // { required = true; })
      (drives.secrets // { required = true; })
      (drives.config // { required = true; })
    ];
    vsock = {
      agent_port = 1024;
      handlers = [
        "ping"
        "readiness"
        "service-status"
        "drain"
        "post-restore"
        "config-reload"
        "secrets-reload"
      ];
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
      min_runtime_s = 300;
      floor = 0;
    };
    secrets = [
      {
        name = "gateway-token";
        description = "The tenant gateway's auth token, used by the node host to connect.";
        generate = "token";
      }
      {
        name = "node-setup-code";
        description = "Single-use OpenClaw node setup code, minted by this tenant's gateway at every boot and wake; the node host pairs with it once, then reconnects with the device token it keeps on /data.";
        generate = "openclaw-setup-code";
      }
    ];
    lifecycle = {
      disposable = false;
      boot_timeout_s = 180;
      drain_timeout_s = 60;
      stop_timeout_s = 20;
      restart = "on-failure";
      max_restarts = 5;
      restart_window_s = 600;
    };
    pool_overrides = {
      sleep = true;
      ingress = false;
      connectors = false;
    };
  };
}
