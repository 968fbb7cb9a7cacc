# The manifest export as a function of the directories it reads, with builtins only (no
# nixpkgs). nix/lib/manifests.nix applies it to the repository's roles and profiles; a site
# adds its own directories:
#
#   nix-instantiate --eval --strict --json nix/lib/export-manifests.nix \
#     --arg roleDirs '[ ./nix/roles ./site/roles ]'
#
# Each role file is read as `(import file).mvm.role`, completed with the defaults from
# ./defaults.nix (the same defaults nix/modules/options.nix declares), and keyed by its name.
# A role whose `name` differs from its file name is an evaluation error naming both.
{
  roleDirs ? [ ../roles ],
  profileDirs ? [ ../profiles ],
}:
let
  defaults = import ./defaults.nix;

  # Attribute sets merge key by key; lists and scalars in `override` replace `base`.
  merge =
    base: override:
    base
    // builtins.mapAttrs (
      name: value:
      if builtins.isAttrs value && builtins.isAttrs (base.${name} or null) then
        merge base.${name} value
      else
        value
    ) override;

  nixFilesIn =
    dir:
    let
      files = import ./nix-files.nix dir;
    in
    map (stem: {
      inherit stem;
      path = files.${stem};
    }) (builtins.attrNames files);

  checkName =
    kind: file: value:
    if !(value ? name) then
      throw "${toString file.path}: mvm.${kind}.name is missing; set it to \"${file.stem}\""
    else if value.name != file.stem then
      throw "${toString file.path}: mvm.${kind}.name is \"${value.name}\" but the file is ${file.stem}.nix; they must match"
    else
      value;

  completeRole =
    role:
    let
      withDefaults = merge defaults.role role;
    in
    withDefaults
    // {
      services = map (merge defaults.service) withDefaults.services;
      ports = map (merge defaults.port) withDefaults.ports;
      drives = map (merge defaults.drive) withDefaults.drives;
      depends_on = map (merge defaults.dependency) withDefaults.depends_on;
      secrets = map (merge defaults.secret) withDefaults.secrets;
      connectors = map (merge defaults.connector) withDefaults.connectors;
    };

  readRole = file: checkName "role" file (completeRole (import file.path).mvm.role);
  readProfile = file: checkName "profile" file (merge defaults.profile (import file.path).mvm.profile);

  byName =
    read: dirs:
    builtins.listToAttrs (
      map (file: {
        name = file.stem;
        value = read file;
      }) (builtins.concatMap nixFilesIn dirs)
    );
in
{
  schema_version = 1;
  roles = byName readRole roleDirs;
  profiles = byName readProfile profileDirs;
}
