# minimal: the smallest guest: systemd, the mvm guest agent and coreutils. The base of every
# other profile.
{
  mvm.profile = {
    name = "minimal";
    description = "Smallest guest: systemd, the mvm guest agent, coreutils.";
    layers = [ "base" ];
    packages = [ "coreutils" "util-linux" "e2fsprogs" ];
    resources = {
      defaults = { vcpus = 1; mem_mib = 256; data_disk_mib = 512; };
      minimums = { vcpus = 1; mem_mib = 128; data_disk_mib = 0; };
    };
  };
}
