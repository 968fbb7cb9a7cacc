# builder: runs Nix build jobs handed to it on a job drive (never SSH). Disposable: it runs its
# job to completion and is destroyed; nothing it writes outlives it, and nothing is exposed to
# the tenant network.
let
  drives = (import ../lib/defaults.nix).drives;
in
{
  mvm.role = {
    name = "builder";
    description = "Runs Nix build jobs from a job drive and is destroyed when done; no tenant exposure, no persistent state.";
    profiles = {
      default = "minimal";
      allowed = [ "minimal" "custom" ];
    };
    services = [
      {
        name = "build-job";
        description = "Reads the job on /run/mvm-job, builds it, writes results back to the job drive.";
        program = "mvm-build-job";
        args = [ "/run/mvm-job" ];
        ports = [ ];
        readiness = {
          kind = "agent";
          timeout_s = 60;
          interval_s = 1;
        };
        stop_timeout_s = 10;
      }
    ];
    ports = [ ];
    drives = [
      (drives.data // { persistence = "disposable"; required = true; mount = "/scratch"; label = "mvm-scratch"; })
      (drives.secrets // { required = false; })
      (drives.config // { required = true; })
      {
        name = "job";
        device = "vde";
        mount = "/run/mvm-job";
        label = "mvm-job";
        read_only = false;
        required = true;
        persistence = "disposable";
      }
    ];
    vsock = {
      agent_port = 1024;
      handlers = [ "ping" "readiness" "service-status" "job-status" ];
    };
    depends_on = [ ];
    sleep = {
      allowed = false;
      warm_allowed = false;
      min_runtime_s = 0;
      floor = 0;
    };
    lifecycle = {
      disposable = true;
      boot_timeout_s = 60;
      drain_timeout_s = 10;
      stop_timeout_s = 15;
      restart = "never";
      max_restarts = 0;
      restart_window_s = 60;
    };
    pool_overrides = {
      sleep = false;
      ingress = false;
      connectors = false;
    };
  };
}
