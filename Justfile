# Operator recipes: `just setup` applies everything, `just setup -- --step db` one
# step, `just setup-db` the same. Settings come from the environment:
#   WARDEN_CONFIG (warden.toml), WARDEN_ROOT (/), WARDEN (warden on PATH).
set positional-arguments

export WARDEN := env_var_or_default("WARDEN", "warden")
export WARDEN_CONFIG := env_var_or_default("WARDEN_CONFIG", "warden.toml")
export WARDEN_ROOT := env_var_or_default("WARDEN_ROOT", "/")

# Show what apply would change.
plan *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden plan "$@"

# Apply everything, or what the arguments select: just setup -- --step db
setup *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply "$@"

# The network: bridge, gateway aliases and PF.
setup-network *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step network --step pf "$@"

setup-git *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step git "$@"

setup-cms *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step cms "$@"

setup-db *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step db "$@"

setup-llama-cpp *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step llama-cpp "$@"

setup-soul *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden apply --step soul "$@"

# Is every agent up (exit 3 when something is down).
status *args:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden status "$@"

# Validate the manifests.
check:
    @"$WARDEN" --config "$WARDEN_CONFIG" check

# The last runs.
history:
    @"{{just_executable()}}" --justfile "{{justfile()}}" _warden history

# The test suite.
test:
    cargo test

# Runs warden with the settings above; a leading `--` (from `just setup -- ...`) is dropped.
_warden command *args:
    #!/bin/sh
    set -eu
    command=$1
    shift
    if [ "${1:-}" = "--" ]; then
        shift
    fi
    exec "$WARDEN" --config "$WARDEN_CONFIG" "$command" --root "$WARDEN_ROOT" "$@"
