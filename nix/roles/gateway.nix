# gateway: the tenant's OpenClaw Gateway.
#
# One WebSocket endpoint on the tenant network (port 18789, HTTP and WS on one port), optional
# WSS ingress terminated on the host, the WhatsApp and Telegram channel connectors, all state on
# /data, secrets from /run/secrets, config from /etc/mvm-config. Without its config and secrets
# drives a gateway never starts. Every tenant keeps at least one gateway running (sleep floor).
#
# This file is plain data (readable with builtins alone) and a NixOS module (typed by
# nix/modules/options.nix); see docs/roles.md.
let
  drives = (import ../lib/defaults.nix).drives;
in
{
  mvm.role = {
    name = "gateway";
    description = "Runs the OpenClaw Gateway for one tenant: the WebSocket endpoint its workers and clients use, channel connectors, and agent state on /data.";
    profiles = {
      default = "openclaw-gateway";
      allowed = [ "openclaw-gateway" "custom" ];
    };
    services = [
      {
        name = "openclaw-gateway";
        description = "The OpenClaw Gateway (HTTP and WebSocket on one port).";
        program = "openclaw";
        # Bind address, port and token auth come from the generated openclaw.json (config below).
        args = [ "gateway" "run" ];
        ports = [ "gateway-ws" ];
        # The control plane renders this file onto the config drive from the pool's desired state.
        config = {
          format = "openclaw-gateway";
          file = "openclaw.json";
        };
        # OpenClaw's own protocol: /readyz 200 (not /healthz, which is green ~2.5 s before connects
        # are accepted), then connect with the token and a device identity, expecting hello-ok.
        readiness = {
          kind = "openclaw-handshake";
          port = "gateway-ws";
          token_secret = "gateway-token";
          client_role = "operator";
          scopes = [ "operator.read" ];
          timeout_s = 120;
          interval_s = 2;
        };
        # A channel that cannot reach its API can hold OpenClaw's shutdown for minutes; the
        # driver kills it after this deadline.
        stop_timeout_s = 20;
      }
    ];
    ports = [
      {
        name = "gateway-ws";
        port = 18789;
        protocol = "tcp";
        exposure = "tenant";
      }
    ];
    ingress = {
      allowed = true;
      default_enabled = false;
      target_port = "gateway-ws";
    };
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
        "connector-status"
        # Mints a single-use node setup code over the gateway's own loopback, where OpenClaw
        # approves the agent as an operator; the host hands it to a worker of this tenant.
        "openclaw-setup-code"
      ];
    };
    depends_on = [ ];
    sleep = {
      allowed = true;
      warm_allowed = true;
      min_runtime_s = 900;
      floor = 1;
    };
    secrets = [
      {
        name = "gateway-token";
        description = "The tenant gateway's WebSocket auth token; the control plane mints it and also uses it to probe readiness.";
        generate = "token";
      }
    ];
    connectors = [
      {
        name = "telegram";
        description = "Telegram bot channel (long polling; no inbound port).";
        secrets = [ "telegram-bot-token" ];
        state_on_data = false;
      }
      {
        name = "whatsapp";
        description = "WhatsApp linked-device channel; its login state lives on /data.";
        secrets = [ ];
        state_on_data = true;
      }
    ];
    lifecycle = {
      disposable = false;
      boot_timeout_s = 180;
      drain_timeout_s = 60;
      stop_timeout_s = 30;
      restart = "always";
      max_restarts = 5;
      restart_window_s = 600;
    };
    pool_overrides = {
      sleep = true;
      ingress = true;
      connectors = true;
    };
  };
}
