# Every built-in role and profile manifest as JSON-ready data:
#
#   nix-instantiate --eval --strict --json nix/lib/manifests.nix
#
# `npm run manifests` writes this output to nix/manifests/{roles,profiles}/<name>.json, which is
# what the runtime loads (it never runs Nix). test/nix/ fails when the two drift.
import ./export-manifests.nix { }
