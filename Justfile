# warden's recipes for a fleet repository (this file sits beside warden.toml;
# `warden init` writes it). They run the installed `warden`.
#   just plan                     what would change
#   just setup --yes              apply everything (`just setup -- --yes` works too)
#   just setup-db --yes           one step: network, pf, git, cms, db, llama-cpp,
#                                 ollama, soul, service, vm
#   just destroy AGENT            remove one agent (asks first)
# Settings come from the environment:
#   WARDEN (warden on PATH), WARDEN_CONFIG (warden.toml), WARDEN_ROOT (/).
set positional-arguments

export WARDEN := env_var_or_default("WARDEN", "warden")
export WARDEN_CONFIG := env_var_or_default("WARDEN_CONFIG", "warden.toml")
export WARDEN_ROOT := env_var_or_default("WARDEN_ROOT", "/")

# Show what apply would change.
plan *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden plan "$@"

# Apply everything, or what the arguments select: just setup --step db --yes
setup *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply "$@"

# The network: bridge, gateway aliases and PF.
setup-network *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step network --step pf "$@"

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
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden destroy --agent "$@"

# Is every agent up (exit 3 when something is down).
status *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden status "$@"

# Validate the manifests.
check *args:
    @"$WARDEN" --config "$WARDEN_CONFIG" check "$@"

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
