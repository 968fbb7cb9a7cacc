# A role bundle: one directory with everything the runtime needs to boot instances of a role.
# Files are copies, not store symlinks, so the directory can be imported into the runtime's
# artifact store as it is (the runtime never reads /nix/store paths).
#
#   kernel                   the guest kernel, uncompressed vmlinux (Firecracker boots ELF
#                            kernels on x86_64; the kernel's `dev` output keeps vmlinux)
#   initrd                   the NixOS stage-1 initrd: loads virtio drivers, mounts the root
#                            image and starts the system (NixOS cannot boot from the kernel alone)
#   rootfs.ext4              the read-only root image (label "mvm-root") with the guest's closure
#   firecracker-config.json  the base Firecracker config (`firecracker --config-file`); paths are
#                            relative to the bundle; per-instance parts are left to the runtime
#   manifest.json            the role manifest (config.mvm.manifest)
#   profile.json             the profile manifest (config.mvm.profileManifest)
#
# Arguments: `pkgs` for the build, `nixpkgs` (the flake input, for make-ext4-fs.nix) and `nixos`,
# the role's nixosSystem.
{
  pkgs,
  nixpkgs,
  nixos,
}:
let
  inherit (pkgs) lib;
  inherit (nixos) config;
  role = config.mvm.manifest;
  profile = config.mvm.profileManifest;

  toplevel = config.system.build.toplevel;
  kernel = config.system.build.kernel;
  hostPlatform = pkgs.stdenv.hostPlatform;
  kernelImage =
    if hostPlatform.isx86_64 then
      "${kernel.dev}/vmlinux"
    else
      "${kernel}/${hostPlatform.linux-kernel.target}";
  initrd = "${config.system.build.initialRamdisk}/${config.system.boot.loader.initrdFile}";

  rootfs = pkgs.callPackage "${nixpkgs}/nixos/lib/make-ext4-fs.nix" {
    storePaths = [ toplevel ];
    volumeLabel = "mvm-root";
  };

  # One slot per declared drive, in device order: Firecracker names virtio-blk devices in the
  # order of `drives`, the root image first (vda). The guest mounts drives by label, so an
  # optional drive the runtime leaves out does not disturb the others.
  driveSlot = drive: {
    drive_id = drive.name;
    partuuid = null;
    is_root_device = false;
    # Persistent drives must honour the guest's flushes; everything else is rebuilt anyway.
    cache_type = if drive.persistence == "persistent" then "Writeback" else "Unsafe";
    is_read_only = drive.read_only;
    # Per instance: the runtime sets the image path by drive_id and removes the slots of
    # optional drives it does not attach. A null path makes Firecracker refuse the template.
    path_on_host = null;
    io_engine = "Sync";
    rate_limiter = null;
    socket = null;
  };

  firecrackerConfig = {
    boot-source = {
      kernel_image_path = "kernel";
      initrd_path = "initrd";
      # Firecracker appends root=/dev/vda ro for the root drive; NixOS's initrd mounts by label
      # instead, and init= starts the system that rootfs.ext4 carries.
      boot_args = toString (config.boot.kernelParams ++ [ "init=${toplevel}/init" ]);
    };
    drives = [
      {
        drive_id = "rootfs";
        partuuid = null;
        is_root_device = true;
        cache_type = "Unsafe";
        is_read_only = true;
        path_on_host = "rootfs.ext4";
        io_engine = "Sync";
        rate_limiter = null;
        socket = null;
      }
    ]
    ++ map driveSlot (lib.sortOn (drive: drive.device) role.drives);
    machine-config = {
      # The profile's defaults; a pool may give more (never less than the profile's minimums).
      vcpu_count = profile.resources.defaults.vcpus;
      mem_size_mib = profile.resources.defaults.mem_mib;
      smt = false;
      track_dirty_pages = false;
      huge_pages = "None";
    };
    cpu-config = null;
    balloon = null;
    # Per instance: the tenant network tap and the vsock device (guest_cid, uds_path) are the
    # runtime's; the guest agent listens on vsock port role.vsock.agent_port.
    network-interfaces = [ ];
    vsock = null;
    logger = null;
    metrics = null;
    mmds-config = null;
    entropy = null;
    pmem = [ ];
    memory-hotplug = null;
  };

  json = name: value: pkgs.writeText name (builtins.toJSON value);
in
pkgs.runCommand "mvm-role-${role.name}"
  {
    passthru = {
      inherit rootfs firecrackerConfig;
      inherit (config.mvm) manifest profileManifest;
    };
  }
  ''
    mkdir -p $out
    cp --reflink=auto ${kernelImage} $out/kernel
    cp --reflink=auto ${initrd} $out/initrd
    cp --reflink=auto ${rootfs} $out/rootfs.ext4
    cp ${json "firecracker-config.json" firecrackerConfig} $out/firecracker-config.json
    cp ${json "manifest.json" role} $out/manifest.json
    cp ${json "profile.json" profile} $out/profile.json
  ''
