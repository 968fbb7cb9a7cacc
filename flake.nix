{
  description = "mvm-actors: Firecracker microVM roles and profiles declared in Nix";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};

      roleFiles = import ./nix/lib/nix-files.nix ./nix/roles;
      profileFiles = import ./nix/lib/nix-files.nix ./nix/profiles;
      manifests = import ./nix/lib/manifests.nix;

      # A role's guest with the role's default profile.
      guestFor =
        name:
        lib.nixosSystem {
          inherit system;
          modules = [
            self.nixosModules.default
            roleFiles.${name}
            profileFiles.${manifests.roles.${name}.profiles.default}
          ];
        };

      # Evaluates the guest's assertions (the role's cross-field checks among them) and the
      # agreement of its mvm.manifest with the builtins-only export, then writes the manifest.
      checkRole =
        name: nixos:
        let
          inherit (nixos) config;
          failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
          verdict =
            if failed != [ ] then
              throw "role ${name}: failed assertions:\n- ${lib.concatStringsSep "\n- " failed}"
            else if config.mvm.manifest != manifests.roles.${name} then
              throw "role ${name}: config.mvm.manifest differs from the export of nix/lib/manifests.nix"
            else
              true;
        in
        builtins.seq verdict (pkgs.writeText "mvm-manifest-${name}.json" (builtins.toJSON config.mvm.manifest));
    in
    {
      nixosModules = {
        options = ./nix/modules/options.nix;
        guest = ./nix/modules;
        default = ./nix/modules;
        roles = roleFiles;
        profiles = profileFiles;
      };

      # Plain data, system-independent: `nix eval --json .#mvmManifests`.
      mvmManifests = manifests;

      lib.exportManifests = import ./nix/lib/export-manifests.nix;

      nixosConfigurations = lib.mapAttrs (name: _: guestFor name) roleFiles;

      packages.${system} =
        lib.mapAttrs' (
          name: nixos:
          lib.nameValuePair "role-${name}" (import ./nix/lib/bundle.nix { inherit pkgs nixpkgs nixos; })
        ) self.nixosConfigurations
        // {
          manifests = pkgs.writeText "mvm-manifests.json" (builtins.toJSON manifests);
        };

      checks.${system} = lib.mapAttrs' (
        name: nixos: lib.nameValuePair "manifests-${name}" (checkRole name nixos)
      ) self.nixosConfigurations;
    };
}
