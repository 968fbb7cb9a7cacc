# The guest NixOS system of a role, derived from `mvm.role` and `mvm.profile`.
#
# Disk layout (Firecracker assigns virtio-blk devices in the order of its config's `drives`):
#   vda        the role bundle's rootfs.ext4, label "mvm-root", attached read-only. It holds the
#              system closure under nix/store; it is mounted read-only at /nix/.ro-store and
#              bind-mounted read-only onto /nix/store.
#   /          a tmpfs, rebuilt at every boot, as in microvm.nix. NixOS activation writes /etc,
#              /var, /bin/sh and the users at every boot, so the read-only image cannot be / itself;
#              nothing the guest writes outside its drives survives a reboot.
#   vdb...     the role's drives (`mvm.role.drives`), mounted by filesystem label, so a missing
#              optional drive never shifts the others.
#
# The host talks to the guest over vsock only (the guest agent); there is no SSH and no shell
# service on the network.
#
# The guest agent (src/guest/main.ts) runs on Node, which has no AF_VSOCK sockets. So it listens
# on a Unix socket, `agentSocket` below, and a second unit, mvm-vsock-bridge, listens on the
# role's vsock port (`mvm.role.vsock.agent_port`) with socat and connects each host connection to
# that socket: the host's `CONNECT <port>` through Firecracker's vsock device reaches the agent
# exactly as the simulator's VMM socket delivers it in dev mode. The agent reads everything else
# (instance, tenant, role, enabled handlers) from the config drive's mvm.json, as in dev mode.
# Role services record their main pid in `pidDir`, which the agent's probe reads for services
# without a TCP port.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib)
    concatMapStringsSep
    filter
    hasPrefix
    listToAttrs
    mkDefault
    mkForce
    mkMerge
    nameValuePair
    optional
    optionalAttrs
    splitString
    ;

  role = config.mvm.role;
  profile = config.mvm.profile;

  rootLabel = "mvm-root";
  roStore = "/nix/.ro-store";

  quoted = concatMapStringsSep ", " (value: "\"${value}\"");

  # Programs are named as installed by the profile; the system profile's bin holds them all.
  systemBin = "/run/current-system/sw/bin";
  programPath = program: if hasPrefix "/" program then program else "${systemBin}/${program}";
  execStart = program: args: utils.escapeSystemdExecArgs ([ (programPath program) ] ++ args);

  # Profile packages are attribute names in pkgs; a dotted name reaches into a package set
  # ("python3Packages.requests").
  packagePath = name: splitString "." name;
  missingPackages = filter (name: !(lib.hasAttrByPath (packagePath name) pkgs)) profile.packages;
  packageFor =
    name:
    lib.attrByPath (packagePath name) (throw "mvm.profile \"${profile.name}\": package \"${name}\" (in mvm.profile.packages) is not an attribute of pkgs") pkgs;

  drivesNamed = listToAttrs (map (drive: nameValuePair drive.name drive) role.drives);
  dataDrive = drivesNamed.data or null;
  configDir = (drivesNamed.config or { mount = "/etc/mvm-config"; }).mount;
  secretsDir = (drivesNamed.secrets or { mount = "/run/secrets"; }).mount;

  # The guest agent's runtime files: its Unix socket (bridged to vsock) and the services' pid files.
  runDir = "/run/mvm";
  agentSocket = "${runDir}/agent.sock";
  pidDir = "${runDir}/pids";
  requiredMounts = map (drive: drive.mount) (filter (drive: drive.required) role.drives);
  optionalMounts = map (drive: drive.mount) (filter (drive: !drive.required) role.drives);

  driveFileSystem = drive: {
    device = "/dev/disk/by-label/${drive.label}";
    fsType = "ext4";
    # Role data never needs device nodes or setuid programs.
    options = [
      "nodev"
      "nosuid"
    ]
    ++ optional drive.read_only "ro"
    # An optional drive that is absent must not hold up the boot.
    ++ optional (!drive.required) "nofail";
  };

  roleService = service: {
    inherit (service) description;
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ];
    unitConfig = {
      # Without its required drives (data, secrets, config) a service does not start.
      RequiresMountsFor = requiredMounts;
      WantsMountsFor = optionalMounts;
    };
    serviceConfig = {
      ExecStart = execStart service.program service.args;
      # For the guest agent's probe of services without a TCP port (--pid-dir).
      # systemd sets MAINPID for ExecStartPost; "$$" hands the shell a literal "$".
      ExecStartPost = "${pkgs.runtimeShell} -c 'echo $$MAINPID > ${pidDir}/${service.name}.pid'";
      TimeoutStopSec = service.stop_timeout_s;
      # No systemd restarts: instance restarts are the control plane's (mvm.role.lifecycle),
      # and the guest agent reports a failed service through service-status.
    }
    // optionalAttrs (dataDrive != null) {
      # "-": an optional data drive that is absent leaves the unit in /.
      WorkingDirectory = (if dataDrive.required then "" else "-") + dataDrive.mount;
    };
  };
in
{
  assertions = [
    {
      assertion = missingPackages == [ ];
      message = "mvm.profile \"${profile.name}\": packages ${quoted missingPackages} (in mvm.profile.packages) are not attributes of pkgs";
    }
    {
      assertion = !(builtins.any (service: service.name == "mvm-guest-agent") role.services);
      message = "mvm.role \"${role.name}\": services[].name \"mvm-guest-agent\" is reserved for the guest agent";
    }
    {
      assertion = !(builtins.any (drive: drive.name == "rootfs") role.drives);
      message = "mvm.role \"${role.name}\": drives[].name \"rootfs\" is reserved for the root image (its Firecracker drive_id)";
    }
    {
      assertion = !(builtins.any (drive: drive.mount == "/" || drive.mount == "/nix" || hasPrefix "/nix/" drive.mount) role.drives);
      message = "mvm.role \"${role.name}\": drives[].mount must not be / or under /nix; the root image provides them";
    }
  ];

  boot.loader.grub.enable = false;
  # Firecracker loads the kernel and initrd itself; these are the boot_args of the bundle's
  # firecracker-config.json (with init=<toplevel>/init). pci=off: Firecracker's devices are
  # virtio-mmio, announced on the command line.
  boot.kernelParams = [
    "console=ttyS0"
    "reboot=k"
    "panic=1"
    "pci=off"
  ];
  boot.initrd.availableKernelModules = [
    "virtio_mmio"
    "virtio_blk"
    "ext4"
  ];
  # Loaded explicitly: virtio-mmio devices given on the command line have no modalias for udev
  # to act on until the bus driver is in.
  boot.initrd.kernelModules = [
    "virtio_mmio"
    "virtio_blk"
  ];
  boot.kernelModules = [
    "virtio_net"
    "vsock"
    "vmw_vsock_virtio_transport"
  ];

  fileSystems = {
    "/" = {
      device = "none";
      fsType = "tmpfs";
      options = [ "mode=0755" ];
    };
    ${roStore} = {
      device = "/dev/disk/by-label/${rootLabel}";
      fsType = "ext4";
      options = [ "ro" ];
      neededForBoot = true;
    };
    "/nix/store" = {
      device = "${roStore}/nix/store";
      fsType = "none";
      options = [
        "bind"
        "ro"
      ];
      depends = [ roStore ];
      neededForBoot = true;
    };
  }
  // listToAttrs (map (drive: nameValuePair drive.mount (driveFileSystem drive)) role.drives);

  systemd.sockets.nix-daemon.enable = mkDefault false;

  # Created before any service starts; root-only, like the agent.
  systemd.tmpfiles.rules = [
    "d ${runDir} 0700 root root -"
    "d ${pidDir} 0755 root root -"
  ];

  environment.systemPackages = map packageFor profile.packages;

  systemd.services = mkMerge [
    (listToAttrs (map (service: nameValuePair service.name (roleService service)) role.services))
    {
      # The store is read-only, so there is nothing for a Nix daemon to do.
      nix-daemon.enable = mkDefault false;

      # The flags are those of src/guest/main.ts; the handlers come from mvm.json on the config drive.
      mvm-guest-agent = {
        description = "mvm guest agent: the host's control channel (vsock through mvm-vsock-bridge)";
        wantedBy = [ "multi-user.target" ];
        after = [ "systemd-tmpfiles-setup.service" ];
        # The agent answers ping even when the config drive is missing, so only want it.
        unitConfig.WantsMountsFor = [
          configDir
          secretsDir
        ];
        serviceConfig = {
          ExecStart = execStart "mvm-guest-agent" [
            "--listen"
            agentSocket
            "--config-dir"
            configDir
            "--secrets-dir"
            secretsDir
            "--pid-dir"
            pidDir
          ];
          Restart = "always";
          RestartSec = 1;
        };
      };

      # AF_VSOCK for the agent: one socat child per host connection, piped to the agent's socket.
      mvm-vsock-bridge = {
        description = "vsock port ${toString role.vsock.agent_port} to the mvm guest agent's Unix socket";
        wantedBy = [ "multi-user.target" ];
        wants = [ "mvm-guest-agent.service" ];
        after = [
          "systemd-modules-load.service"
          "mvm-guest-agent.service"
        ];
        serviceConfig = {
          ExecStart = utils.escapeSystemdExecArgs [
            "${pkgs.socat}/bin/socat"
            "VSOCK-LISTEN:${toString role.vsock.agent_port},fork,reuseaddr"
            "UNIX-CONNECT:${agentSocket}"
          ];
          Restart = "always";
          RestartSec = 1;
        };
      };
    }
  ];

  # Host-guest control goes over vsock only (the guest agent above); nothing in the design logs
  # in to a guest, so no SSH daemon, keys or open port 22. Forced so that no imported profile
  # turns it back on.
  services.openssh.enable = mkForce false;

  networking.hostName = mkDefault role.name;
  # The firewall stays on: "tenant" ports are opened, "local" ports stay inside the guest.
  networking.firewall.allowedTCPPorts = map (port: port.port) (
    filter (port: port.exposure == "tenant" && port.protocol == "tcp") role.ports
  );
  networking.firewall.allowedUDPPorts = map (port: port.port) (
    filter (port: port.exposure == "tenant" && port.protocol == "udp") role.ports
  );

  documentation.enable = mkDefault false;
  # The root filesystem is rebuilt at every boot, so no NixOS state outlives a release.
  system.stateVersion = mkDefault "25.11";
}
