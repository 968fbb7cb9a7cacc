# openclaw-gateway: Node.js 24 and the OpenClaw package, with the WhatsApp plugin baked in (a
# gateway would otherwise try to npm-install it at start-up). The idle gateway's RSS is about
# 650-850 MB, so the memory minimum leaves room for agents above that.
{
  # The OpenClaw services as systemd units (environment, output, stop); the export reads only mvm.profile.
  imports = [ ./openclaw/units.nix ];
  mvm.profile = {
    name = "openclaw-gateway";
    description = "Node.js 24, OpenClaw and its WhatsApp plugin for the gateway role.";
    layers = [ "base" "nodejs" "openclaw" ];
    packages = [ "coreutils" "util-linux" "e2fsprogs" "nodejs_24" "openclaw" ];
    resources = {
      defaults = { vcpus = 2; mem_mib = 2048; data_disk_mib = 4096; };
      minimums = { vcpus = 1; mem_mib = 1536; data_disk_mib = 1024; };
    };
  };
}
