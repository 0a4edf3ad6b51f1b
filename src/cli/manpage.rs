//! The manual pages: warden(8) and one warden-COMMAND(8) per command, from the
//! command line's own help text plus the sections an operator looks for (EXIT
//! STATUS, ENVIRONMENT, FILES, EXAMPLES, the manifest and warden.toml keys).

use std::io::Write;

/// Text for roff: backslashes and hyphens escaped, no line starting a request.
fn esc(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn section(out: &mut String, title: &str) {
    out.push_str(&format!(".SH \"{title}\"\n"));
}

/// A tagged paragraph: `tag` in bold, then `text`.
fn item(out: &mut String, tag: &str, text: &str) {
    out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", esc(tag), esc(text)));
}

fn para(out: &mut String, text: &str) {
    out.push_str(&format!(".PP\n{}\n", esc(text)));
}

fn example(out: &mut String, what: &str, cmd: &str) {
    para(out, what);
    out.push_str(&format!(".PP\n.RS 4\n\\fB{}\\fR\n.RE\n", esc(cmd)));
}

fn exit_status(name: &str) -> Vec<(&'static str, &'static str)> {
    match name {
        "plan" => vec![
            ("0", "The plan was made (with --detailed-exitcode: and there is nothing to do)."),
            ("1", "An error, including invalid input or a usage error; nothing was changed."),
            ("2", "With --detailed-exitcode: the plan has changes."),
        ],
        "status" => vec![
            ("0", "Every agent is healthy and the last run finished."),
            ("1", "An error, including invalid input."),
            ("3", "Something is down, or the last run failed or was interrupted."),
        ],
        "apply" | "destroy" => vec![
            ("0", "Done, or nothing to do."),
            ("1", "An error, a refused or stale plan, or the confirmation was declined; what was applied before the error is recorded."),
        ],
        _ => vec![
            ("0", "Success."),
            ("1", "An error, including invalid input or a usage error."),
        ],
    }
}

fn examples(name: &str) -> Vec<(&'static str, &'static str)> {
    match name {
        "" => vec![
            (
                "Start a fleet repository with one agent:",
                "warden init nova",
            ),
            (
                "See what would change, then apply it:",
                "warden plan && warden apply",
            ),
        ],
        "check" => vec![
            ("Validate warden.toml and every manifest:", "warden check"),
            (
                "Validate another host's settings and agents:",
                "warden check --config hosts/gpu1/warden.toml",
            ),
        ],
        "render" => vec![(
            "Write every file warden would install under out/, to review or diff:",
            "warden render --out out",
        )],
        "soul" => vec![(
            "Validate a soul bundle before pointing SOUL_REPO at it:",
            "warden soul check souls/nova --agent nova",
        )],
        "fleet" => vec![(
            "Check every host of a fleet repository (hosts/HOSTNAME/warden.toml):",
            "warden fleet check hosts",
        )],
        "plan" => vec![
            (
                "Only the database jails of one agent:",
                "warden plan --step db --agent nova",
            ),
            (
                "Save a plan to apply it exactly later:",
                "warden plan --out plan.json",
            ),
        ],
        "apply" => vec![
            ("Apply without asking:", "warden apply --yes"),
            ("Apply a saved, reviewed plan:", "warden apply plan.json"),
        ],
        "destroy" => vec![(
            "Remove an agent, keeping its data:",
            "warden destroy --agent nova",
        )],
        "init" => vec![(
            "A new agent on a chosen subnet:",
            "warden init nova --subnet 10.0.7",
        )],
        "status" => vec![(
            "Check one agent from a script:",
            "warden status --agent nova || echo down",
        )],
        "backup" => vec![(
            "Every agent, nightly from cron:",
            "warden backup --all --to /var/backups/warden",
        )],
        "restore" => vec![
            (
                "Check an archive and list what it would restore, changing nothing:",
                "warden restore --dry-run --agent nova /var/backups/warden/nova-20261121T030000Z.tar.xz",
            ),
            (
                "Restore an agent from an archive:",
                "warden restore --agent nova /var/backups/warden/nova-20261121T030000Z.tar.xz",
            ),
        ],
        "history" => vec![("The last five runs:", "warden history --limit 5")],
        "snapshots" => vec![("The snapshots apply took:", "warden snapshots")],
        "rollback" => vec![(
            "Return nova's jails and home to run 42's snapshots:",
            "warden rollback --run 42 --agent nova",
        )],
        "reach" => vec![("Can atlas reach anything of clawdie?", "warden reach | grep '^atlas -> clawdie'")],
        "quarantine" => vec![(
            "Cut nova off while you look at what it did:",
            "warden quarantine nova --reason exfiltration",
        )],
        "release" => vec![("Let nova back in:", "warden release nova && warden apply")],
        "egress" => vec![
            (
                "Re-resolve the EGRESS host names every ten minutes (cron):",
                "warden egress refresh",
            ),
            (
                "Where did nova try to connect that its EGRESS does not allow?",
                "warden egress log --agent nova",
            ),
        ],
        "man" => vec![("Install the pages:", "warden man --out /usr/local/man/man8")],
        "completions" => vec![(
            "zsh completion:",
            "warden completions zsh > ~/.zfunc/_warden",
        )],
        _ => vec![],
    }
}

/// The command line with each command's examples at the end of its `--help`
/// (the same ones its manual page shows).
pub fn with_examples(cmd: clap::Command) -> clap::Command {
    let help = |name: &str| {
        let mut text = String::from("Examples:");
        for (what, cmd) in examples(name) {
            text.push_str(&format!("\n  {what}\n    {cmd}"));
        }
        text
    };
    let top = help("");
    cmd.after_help(top).mut_subcommands(|sub| {
        let text = help(sub.get_name());
        sub.after_help(text)
    })
}

/// The command line of an example, as clap is given it: its words up to the first
/// shell operator.
fn example_words(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace()
        .take_while(|w| !["&&", "||", ">", "|", ";"].contains(w))
        .collect()
}

/// The sections clap does not write, for the page of `name` ("" for warden(8)).
fn extra(name: &str, commands: &[String]) -> String {
    let mut out = String::new();
    section(&mut out, "EXIT STATUS");
    for (code, what) in exit_status(name) {
        item(&mut out, code, what);
    }
    section(&mut out, "ENVIRONMENT");
    item(&mut out, "NO_COLOR", "When set (and not empty), plan and apply output has no colour; colour is only used on a terminal anyway.");
    item(
        &mut out,
        "RUST_LOG",
        "Log filter, e.g. RUST_LOG=debug logs every command run (as -v does).",
    );
    para(&mut out, "warden reads nothing else from the environment: manifests never expand environment variables.");
    section(&mut out, "FILES");
    item(
        &mut out,
        "./warden.toml",
        "Host settings (--config); every key is optional.",
    );
    item(
        &mut out,
        "agents/NAME.env",
        "One manifest per agent, committed to git.",
    );
    item(
        &mut out,
        "agents/NAME.secrets.env",
        "The agent's secrets, git-ignored; installed 0600 and never printed.",
    );
    item(
        &mut out,
        "/var/db/warden/state.db",
        "The state database: runs, managed resources, alias numbers.",
    );
    item(
        &mut out,
        "/usr/local/etc/rc.d/NAME",
        "Each agent's rc.d script.",
    );
    item(
        &mut out,
        "/etc/pf.warden.conf",
        "warden's PF anchor, loaded by a block in /etc/pf.conf.",
    );
    section(&mut out, "EXAMPLES");
    for (what, cmd) in examples(name) {
        example(&mut out, what, cmd);
    }
    if name.is_empty() {
        section(&mut out, "MANIFEST KEYS");
        para(
            &mut out,
            "Every key but AGENT_NAME and AGENT_SUBNET_BASE has a default.",
        );
        for k in crate::spec::manifest::KEYS {
            let default = if k.default.is_empty() {
                String::new()
            } else {
                format!(" (default: {})", k.default)
            };
            item(&mut out, k.key, &format!("{}{default}", k.doc));
        }
        section(&mut out, "WARDEN.TOML KEYS");
        for (key, doc) in crate::ops::scaffold::CONFIG_DOCS {
            item(&mut out, key, doc);
        }
    }
    section(&mut out, "SEE ALSO");
    let mut see: Vec<String> = if name.is_empty() {
        commands
            .iter()
            .map(|c| format!("warden\\-{c}(8)"))
            .collect()
    } else {
        vec!["warden(8)".into()]
    };
    see.extend([
        "bastille(8)".into(),
        "pf.conf(5)".into(),
        "rc.conf(5)".into(),
        "vm(8)".into(),
    ]);
    out.push_str(&format!("{}\n", see.join(", ")));
    out
}

/// Every page as (file name, roff text): `warden.8` and `warden-COMMAND.8`.
pub fn pages(cmd: clap::Command) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    // `warden help` gets no page of its own: this page is the help.
    let cmd = cmd.disable_help_subcommand(true);
    let commands: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .filter(|n| n != "help")
        .collect();
    // Every example is a command line warden accepts.
    for name in commands.iter().map(String::as_str).chain([""]) {
        let ex = examples(name);
        if ex.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("warden {name}: the manual page has no example"),
            ));
        }
        for (_, example) in ex {
            for part in example.split("&&") {
                if let Err(e) = cmd.clone().try_get_matches_from(example_words(part)) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("the example `{example}` is not a valid warden command: {e}"),
                    ));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut render = |page: clap::Command, name: &str| -> std::io::Result<()> {
        let file = if name.is_empty() {
            "warden.8".to_string()
        } else {
            format!("warden-{name}.8")
        };
        let man = clap_mangen::Man::new(page).section("8");
        let mut buf = Vec::new();
        man.render_title(&mut buf)?;
        man.render_name_section(&mut buf)?;
        man.render_synopsis_section(&mut buf)?;
        man.render_description_section(&mut buf)?;
        man.render_options_section(&mut buf)?;
        if name.is_empty() {
            man.render_subcommands_section(&mut buf)?;
        }
        buf.write_all(extra(name, &commands).as_bytes())?;
        out.push((file, buf));
        Ok(())
    };
    for sub in cmd.get_subcommands() {
        let name = sub.get_name().to_string();
        if name == "help" {
            continue;
        }
        // clap takes static names here; a page is rendered once per process.
        let page_name: &'static str = Box::leak(format!("warden-{name}").into_boxed_str());
        let page = sub
            .clone()
            .name(page_name)
            .bin_name(format!("warden {name}"));
        render(page, &name)?;
    }
    render(cmd, "")?;
    out.rotate_right(1);
    Ok(out)
}
