# custom: the starting point for a site's own profile. Copy this file to
# nix/profiles/<your-name>.nix, set `name` to <your-name>, list the package attribute names
# your guests need, add the profile to the `profiles.allowed` list of the roles that may use
# it, and run `npm run manifests` to export it (see docs/architecture.md, "Adding a VM type").
# As shipped it is minimal's package set, so a pool can select "custom" and get a working guest.
{
  mvm.profile = {
    name = "custom";
    description = "A site-defined profile; as shipped, the minimal package set.";
    layers = [ "base" "custom" ];
    packages = [ "coreutils" "util-linux" "e2fsprogs" ];
    resources = {
      defaults = { vcpus = 1; mem_mib = 512; data_disk_mib = 1024; };
      minimums = { vcpus = 1; mem_mib = 128; data_disk_mib = 0; };
    };
  };
}
