# The mvm guest module: typed role and profile options, their cross-field checks, and the
# NixOS guest system derived from them. A guest configuration imports this module plus one
# file from nix/roles/ and one from nix/profiles/.
{
  imports = [
    ./options.nix
    ./assertions.nix
    ./guest.nix
  ];
}
