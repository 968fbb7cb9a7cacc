# The OpenClaw services of a role as systemd units, imported by the openclaw-gateway and
# openclaw-worker profiles. It adds to the units nix/modules/guest.nix makes for every
# `mvm.role.services` entry, for each service whose generated config is OpenClaw's
# (`services[].config.format`), never by role name:
#
# - the environment of src/openclaw/service-env.ts, from the same file, ./service.json: state,
#   workspace, logs and caches on the data drive, the config read-only from the config drive,
#   no update checks, mDNS or downloads, no self-respawn;
# - Node 24 first on PATH (OpenClaw exits on older Node);
# - stdout and stderr appended to <data>/openclaw/logs/<service>.out after a start marker, as the
#   simulator does: the guest agent's `openclaw-node-connected` readiness reads the node host's
#   connection events there;
# - a private writable /tmp (OpenClaw keeps lock files there whatever its state dir);
# - stop: SIGTERM to the whole unit, SIGKILL after the service's stop_timeout_s (a channel that
#   cannot reach its API can hold OpenClaw's shutdown for minutes); exit status 78 (invalid
#   config) is never restarted;
# - the node host's command line is that of nodeHostArgs (src/openclaw/enrolment.ts), built at
#   start from the config drive (the first depends_on endpoint, the instance id) and the setup
#   code on the secrets drive, as the simulator's launcher does.
#
# test/nix/openclaw-units.test.ts evaluates this offline and compares it with the TypeScript.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib)
    filter
    listToAttrs
    mkForce
    nameValuePair
    ;

  spec = builtins.fromJSON (builtins.readFile ./service.json);
  role = config.mvm.role;

  drivesNamed = listToAttrs (map (drive: nameValuePair drive.name drive) role.drives);
  mountOf = name: fallback: (drivesNamed.${name} or { mount = fallback; }).mount;
  dataDir = mountOf "data" "/data";
  configDir = mountOf "config" "/etc/mvm-config";
  secretsDir = mountOf "secrets" "/run/secrets";
  # PrivateTmp gives each unit its own writable /tmp: the same path as the simulator's GUEST_TMP.
  tmpDir = "/tmp";

  fill =
    service: template:
    builtins.replaceStrings
      [ "@data@" "@config@" "@tmp@" "@config_file@" "@service@" ]
      [ dataDir configDir tmpDir service.config.file service.name ]
      template;

  # As in nix/modules/guest.nix: programs are named as installed by the profile.
  programPath = program: if lib.hasPrefix "/" program then program else "/run/current-system/sw/bin/${program}";

  isOpenClaw = service: (service.config or null) != null && builtins.elem service.config.format [ "openclaw-gateway" "openclaw-node" ];
  openclawServices = filter isOpenClaw role.services;

  environmentOf =
    service:
    builtins.mapAttrs (_: key: fill service spec.layout.${key}) spec.env // spec.constant_env;

  outputOf = service: fill service spec.layout.serviceOutput;

  # `openclaw node run --host H --port P --display-name I [--pair-if-needed CODE]`: the gateway is
  # the first dependency on the config drive (its first port), the name the instance id, the
  # code the secrets drive's file of kind openclaw-setup-code (ignored by OpenClaw once the node
  # holds a device token on /data).
  nodeLauncher = service: ''
    set -eu
    cfg=${configDir}/mvm.json
    host=$(${pkgs.jq}/bin/jq -er '.depends_on[0].ipv4' "$cfg")
    port=$(${pkgs.jq}/bin/jq -er '.depends_on[0].ports | to_entries[0].value' "$cfg")
    name=$(${pkgs.jq}/bin/jq -er '.instance_id' "$cfg")
    secret=$(${pkgs.jq}/bin/jq -r '[(.secrets // [])[] | select(.generate == "openclaw-setup-code") | .name][0] // empty' "$cfg")
    set -- ${lib.escapeShellArgs service.args} --host "$host" --port "$port" --display-name "$name"
    if [ -n "$secret" ] && [ -s "${secretsDir}/$secret" ]; then
      code=$(tr -d '[:space:]' < "${secretsDir}/$secret")
      if [ -n "$code" ]; then set -- "$@" --pair-if-needed "$code"; fi
    fi
    exec ${programPath service.program} "$@"
  '';

  unitFor = service: {
    environment = environmentOf service;
    path = [ pkgs.nodejs_24 ];
    serviceConfig = {
      ExecStartPre = utils.escapeSystemdExecArgs [ "${pkgs.coreutils}/bin/echo" spec.start_marker ];
      StandardOutput = "append:${outputOf service}";
      StandardError = "append:${outputOf service}";
      PrivateTmp = true;
      TimeoutStopSec = service.stop_timeout_s;
      KillMode = "control-group";
      SendSIGKILL = true;
      RestartPreventExitStatus = spec.config_error_exit_status;
    }
    // (
      if service.config.format == "openclaw-node" then
        { ExecStart = mkForce "${pkgs.writeShellScript "${service.name}-run" (nodeLauncher service)}"; }
      else
        { }
    );
  };
in
{
  systemd.services = listToAttrs (map (service: nameValuePair service.name (unitFor service)) openclawServices);

  # StandardOutput=append: opens the file but does not create its directory.
  systemd.tmpfiles.rules = map (service: "d ${dirOf (outputOf service)} 0750 root root -") openclawServices;
}
