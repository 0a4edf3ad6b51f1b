# Operator recipes. Arguments after `--` go to warden, e.g. `just setup -- --step db`.
config := env_var_or_default("WARDEN_CONFIG", "warden.toml")
root := env_var_or_default("WARDEN_ROOT", "/")
warden := env_var_or_default("WARDEN", "warden")

# Show what would change.
plan *args:
    {{warden}} --config {{config}} plan --root {{root}} {{args}}

# Apply everything, or one step: just setup -- --step db
setup *args:
    {{warden}} --config {{config}} apply --root {{root}} {{args}}

setup-network *args:
    {{warden}} --config {{config}} apply --root {{root}} --step network --step pf {{args}}

setup-git *args:
    {{warden}} --config {{config}} apply --root {{root}} --step git {{args}}

setup-cms *args:
    {{warden}} --config {{config}} apply --root {{root}} --step cms {{args}}

setup-db *args:
    {{warden}} --config {{config}} apply --root {{root}} --step db {{args}}

# Validate the manifests.
check:
    {{warden}} --config {{config}} check

# Recent runs.
history:
    {{warden}} --config {{config}} history --root {{root}}

# The test suite.
test:
    cargo test
