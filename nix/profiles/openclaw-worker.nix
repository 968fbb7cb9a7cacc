# openclaw-worker: Node.js 24 and OpenClaw for the node host a worker runs, plus Python for
# the tools agents call on it.
{
  # The OpenClaw services as systemd units (environment, output, stop); the export reads only mvm.profile.
  imports = [ ./openclaw/units.nix ];
  mvm.profile = {
    name = "openclaw-worker";
    description = "Node.js 24, OpenClaw (node host) and Python 3 for the worker role.";
    layers = [ "base" "nodejs" "openclaw" "python" ];
    packages = [ "coreutils" "util-linux" "e2fsprogs" "nodejs_24" "openclaw" "python3" ];
    resources = {
      defaults = { vcpus = 2; mem_mib = 1536; data_disk_mib = 4096; };
      minimums = { vcpus = 1; mem_mib = 768; data_disk_mib = 1024; };
    };
  };
}
