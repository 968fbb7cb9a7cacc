# The `.nix` files directly inside a directory, as { <file name without .nix> = <path>; }.
# The flake uses it to expose nix/roles/*.nix and nix/profiles/*.nix by name (the same naming
# rule as ./export-manifests.nix, which also checks that a file's `name` matches it).
dir:
let
  entries = builtins.readDir dir;
  isNixFile = name: entries.${name} == "regular" && builtins.match ".+\\.nix" name != null;
in
builtins.listToAttrs (
  map (file: {
    name = builtins.substring 0 (builtins.stringLength file - 4) file;
    value = dir + "/${file}";
  }) (builtins.filter isNixFile (builtins.attrNames entries))
)
