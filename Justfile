# warden's recipes for a fleet repository (this file sits beside warden.toml;
# `warden init` writes it). They run the installed `warden`.
#   just plan                     what would change
#   just setup --yes              apply everything (`just setup -- --yes` works too)
#   just setup-db --yes           one step: network (with pf), packages, git, cms,
#                                 db, llama-cpp, ollama, soul, service, vm; a jail
#                                 step brings the package repository up to date first
#   just destroy AGENT            remove one agent (asks first)
#   just backup AGENT             archive an agent into $WARDEN_BACKUPS
#   just restore AGENT ARCHIVE    put an archive back (asks first; --dry-run checks)
#   just snapshots                the ZFS snapshots apply took
#   just rollback RUN             return jails and homes to run RUN's snapshots
# Settings come from the environment:
#   WARDEN (warden on PATH), WARDEN_CONFIG (warden.toml), WARDEN_ROOT (/),
#   WARDEN_BACKUPS (/var/backups/warden, where destroy --purge backs up too).
set positional-arguments

export WARDEN := env_var_or_default("WARDEN", "warden")
export WARDEN_CONFIG := env_var_or_default("WARDEN_CONFIG", "warden.toml")
export WARDEN_ROOT := env_var_or_default("WARDEN_ROOT", "/")
export WARDEN_BACKUPS := env_var_or_default("WARDEN_BACKUPS", "/var/backups/warden")

# Show what apply would change.
plan *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden plan "$@"

# Apply everything, or what the arguments select: just setup --step db --yes
setup *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply "$@"

# The network: bridge, gateway aliases and PF.
setup-network *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step network --step pf "$@"

# The host's package repository every jail installs from (each jail step updates it too).
setup-packages *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step packages "$@"

# The git jails.
setup-git *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step git "$@"

# The CMS jails.
setup-cms *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step cms "$@"

# The PostgreSQL jails.
setup-db *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step db "$@"

# The llama.cpp jails and their devfs rules.
setup-llama-cpp *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step llama-cpp "$@"

# The ollama jails.
setup-ollama *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step ollama "$@"

# The soul bundles.
setup-soul *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step soul "$@"

# The agents' users, env files, rc.d scripts and services.
setup-service *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step service "$@"

# The bhyve VMs of DEPLOY_MODE=bhyve agents.
setup-vm *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step vm "$@"

# Remove one agent (its data is kept unless --purge): just destroy nova
destroy agent *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden destroy --backup-to "$WARDEN_BACKUPS" --agent "$@"

# Is every agent up (exit 3 when something is down).
status *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden status "$@"

# Validate the manifests.
check *args:
    @"$WARDEN" --config "$WARDEN_CONFIG" check "$@"

# Archive one agent into $WARDEN_BACKUPS: just backup atlas --keep 7
backup agent *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden backup --to "$WARDEN_BACKUPS" --agent "$@"

# Archive every agent, one archive each, into $WARDEN_BACKUPS.
backup-all *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden backup --to "$WARDEN_BACKUPS" --all "$@"

# Restore an agent from an archive (verified first): just restore atlas FILE --dry-run
restore agent archive *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden restore --agent "$@"

# The ZFS snapshots apply took before changing jails and homes.
snapshots *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden snapshots "$@"

# Return jails (and homes) to the snapshots of run RUN (asks first): just rollback 12
rollback run *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden rollback --run "$@"

# The last runs.
history *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden history "$@"

# Runs warden with the settings above. Every `--` is dropped, so that
# `just setup-db --yes` and `just setup-db -- --yes` mean the same.
_warden command *args:
    #!/bin/sh
    set -eu
    command=$1
    shift
    for arg do
        shift
        if [ "$arg" != "--" ]; then
            set -- "$@" "$arg"
        fi
    done
    exec "$WARDEN" --config "$WARDEN_CONFIG" "$command" --root "$WARDEN_ROOT" "$@"
