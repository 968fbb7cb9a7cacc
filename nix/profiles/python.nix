# python: minimal plus a Python 3 runtime for tool-running workers.
{
  mvm.profile = {
    name = "python";
    description = "Minimal plus a Python 3 runtime.";
    layers = [ "base" "python" ];
    packages = [ "coreutils" "util-linux" "e2fsprogs" "python3" ];
    resources = {
      defaults = { vcpus = 1; mem_mib = 1024; data_disk_mib = 2048; };
      minimums = { vcpus = 1; mem_mib = 512; data_disk_mib = 512; };
    };
  };
}
