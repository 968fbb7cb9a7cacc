# Cross-field rules for `mvm.role` and `mvm.profile`, collected into `config.assertions` so an
# evaluation reports every problem at once. They mirror the `superRefine` blocks of
# RoleManifest (src/schemas/role-manifest.ts) and ProfileManifest
# (src/schemas/profile-manifest.ts); per-field types are checked by ./options.nix.
#
# Every message starts with the role or profile it is about and names the field, as
#   mvm.role "gateway": ingress.target_port "web" is not in ports
{
  config,
  options,
  lib,
  ...
}:
let
  inherit (lib)
    concatMapStringsSep
    concatStringsSep
    elem
    filter
    imap0
    optionals
    unique
    ;

  role = config.mvm.role;
  profile = config.mvm.profile;

  inRole = message: "mvm.role \"${role.name}\": ${message}";
  inProfile = message: "mvm.profile \"${profile.name}\": ${message}";

  quoted = concatMapStringsSep ", " (value: "\"${toString value}\"");

  portNames = map (port: port.name) role.ports;

  # Keys that occur more than once, each listed once.
  duplicatesOf =
    key: items:
    let
      keys = map key items;
    in
    unique (filter (k: lib.count (other: other == k) keys > 1) keys);

  uniqueIn = listName: field: key: items: {
    assertion = duplicatesOf key items == [ ];
    message = inRole "${listName}[].${field} must be unique; duplicated: ${quoted (duplicatesOf key items)}";
  };

  # The fields each readiness kind requires; the other kind-specific fields must be null.
  readinessFields = {
    tcp = [ "port" ];
    http = [
      "port"
      "path"
      "expect_status"
    ];
    exec = [ "command" ];
    agent = [ ];
    openclaw-handshake = [
      "port"
      "token_secret"
      "client_role"
      "scopes"
    ];
    openclaw-node-connected = [ ];
  };
  kindSpecificFields = [
    "port"
    "path"
    "expect_status"
    "command"
    "token_secret"
    "client_role"
    "scopes"
  ];

  serviceAssertions = imap0 (
    i: service:
    let
      at = "services[${toString i}] (\"${service.name}\")";
      r = service.readiness;
      required = readinessFields.${r.kind};
      missing = filter (field: r.${field} == null) required;
      foreign = filter (field: !(elem field required) && r.${field} != null) kindSpecificFields;
      unknownPorts = filter (port: !(elem port portNames)) service.ports;
    in
    [
      {
        assertion = unknownPorts == [ ];
        message = inRole "${at}.ports names ${quoted unknownPorts}, which ${
          if builtins.length unknownPorts == 1 then "is" else "are"
        } not in ports";
      }
      {
        assertion = missing == [ ];
        message = inRole "${at}.readiness of kind \"${r.kind}\" needs ${concatStringsSep ", " missing}";
      }
      {
        assertion = foreign == [ ];
        message = inRole "${at}.readiness of kind \"${r.kind}\" must not set ${concatStringsSep ", " foreign}";
      }
      {
        assertion = r.kind != "openclaw-node-connected" || role.depends_on != [ ];
        message = inRole "${at}.readiness of kind \"openclaw-node-connected\" needs the gateway the node host dials: declare it as the first entry of depends_on";
      }
      {
        assertion = r.kind != "openclaw-node-connected" || elem "readiness" role.vsock.handlers;
        message = inRole "${at}.readiness of kind \"openclaw-node-connected\" is run by the guest agent: add \"readiness\" to vsock.handlers";
      }
      {
        assertion = r.port == null || elem r.port portNames;
        message = inRole "${at}.readiness.port \"${toString r.port}\" is not in ports";
      }
    ]
  ) role.services;

  driveAssertions = imap0 (i: drive: {
    assertion = !(role.lifecycle.disposable && drive.persistence == "persistent");
    message = inRole "drives[${toString i}] (\"${drive.name}\").persistence is \"persistent\", but lifecycle.disposable is set: a disposable role keeps no persistent tenant state; use \"disposable\"";
  }) role.drives;

  hasEphemeralDrive = builtins.any (drive: drive.persistence == "ephemeral") role.drives;
  connectorAssertions = imap0 (i: connector: {
    assertion = connector.secrets == [ ] || hasEphemeralDrive;
    message = inRole "connectors[${toString i}] (\"${connector.name}\").secrets needs a secrets drive, but drives has no \"ephemeral\" drive";
  }) role.connectors;

  roleAssertions = [
    (uniqueIn "services" "name" (s: s.name) role.services)
    (uniqueIn "ports" "name" (p: p.name) role.ports)
    (uniqueIn "ports" "port" (p: "${toString p.port}/${p.protocol}") role.ports)
    (uniqueIn "drives" "name" (d: d.name) role.drives)
    (uniqueIn "drives" "device" (d: d.device) role.drives)
    (uniqueIn "drives" "mount" (d: d.mount) role.drives)
    (uniqueIn "drives" "label" (d: d.label) role.drives)
    (uniqueIn "connectors" "name" (c: c.name) role.connectors)
    (uniqueIn "secrets" "name" (x: x.name) role.secrets)
    {
      assertion = role.secrets == [ ] || hasEphemeralDrive;
      message = inRole "secrets needs a secrets drive, but drives has no \"ephemeral\" drive";
    }
    (uniqueIn "depends_on" "role" (d: d.role) role.depends_on)
    {
      assertion = role.depends_on != [ ] || !(builtins.any (x: x.generate == "openclaw-setup-code") role.secrets);
      message = inRole "a secret with generate = \"openclaw-setup-code\" is minted by the gateway this role depends on, but depends_on is empty";
    }
    {
      assertion = elem role.profiles.default role.profiles.allowed;
      message = inRole "profiles.default \"${role.profiles.default}\" is not in profiles.allowed";
    }
    {
      assertion = !role.ingress.allowed || role.ingress.target_port != null;
      message = inRole "ingress.allowed is set, so ingress.target_port must name the port ingress forwards to";
    }
    {
      assertion = role.ingress.target_port == null || elem role.ingress.target_port portNames;
      message = inRole "ingress.target_port \"${toString role.ingress.target_port}\" is not in ports";
    }
    {
      assertion = !role.ingress.default_enabled || role.ingress.allowed;
      message = inRole "ingress.default_enabled cannot be set when ingress.allowed is false";
    }
    {
      assertion = !(builtins.any (d: d.role == role.name) role.depends_on);
      message = inRole "depends_on names the role itself";
    }
    {
      assertion = !(role.lifecycle.disposable && (role.sleep.allowed || role.sleep.warm_allowed));
      message = inRole "sleep.allowed or sleep.warm_allowed is set, but lifecycle.disposable is set: a disposable role runs to completion; it cannot sleep or warm";
    }
    {
      assertion = role.sleep.allowed || role.sleep.warm_allowed || role.sleep.floor == 0;
      message = inRole "sleep.floor is ${toString role.sleep.floor}, but a sleep floor only applies to roles that may sleep or warm; set it to 0";
    }
  ]
  ++ builtins.concatLists serviceAssertions
  ++ driveAssertions
  ++ connectorAssertions;

  # Only when a profile is part of the configuration: the role options can be evaluated alone.
  profileAssertions = optionals options.mvm.profile.isDefined (
    map (key: {
      assertion = profile.resources.defaults.${key} >= profile.resources.minimums.${key};
      message = inProfile "resources.defaults.${key} (${toString profile.resources.defaults.${key}}) is below resources.minimums.${key} (${toString profile.resources.minimums.${key}})";
    })
      [
        "vcpus"
        "mem_mib"
        "data_disk_mib"
      ]
    ++ [
      {
        assertion = elem profile.name role.profiles.allowed;
        message = inRole "the configuration uses profile \"${profile.name}\", which is not in profiles.allowed (${quoted role.profiles.allowed})";
      }
    ]
  );
in
{
  assertions = roleAssertions ++ profileAssertions;
}
