//! ZFS snapshots of jails and agents' homes: where Bastille keeps jails, what
//! `zfs list` shows, the names warden gives its snapshots, what a rollback does
//! and which snapshots `snapshot_keep` prunes. Pure functions; `rollback` runs them.
//!
//! Bastille 1.x (BastilleBSD/bastille) reads `/usr/local/etc/bastille/bastille.conf`:
//! with `bastille_zfs_enable` true (rc.subr `checkyesno`) and `bastille_zfs_zpool`
//! set, `create.sh` makes a dataset `ZPOOL/PREFIX/jails/NAME` per jail
//! (`bastille_zfs_prefix`, default `bastille`) and `NAME/root` for a thin jail.
//! zfs-snapshot(8) `-r` snapshots a dataset and its descendants at once;
//! zfs-rollback(8) acts on one dataset (so each dataset of the tree is rolled
//! back, as Bastille's `zfs.sh` does for `NAME` and `NAME/root`) and refuses a
//! snapshot older than the latest unless `-r`, which destroys the later ones.

use std::collections::BTreeMap;

/// Bastille's configuration file.
pub const BASTILLE_CONF: &str = "/usr/local/etc/bastille/bastille.conf";

/// Where Bastille keeps its jails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Plain directories (UFS, or ZFS without Bastille's datasets): no snapshots.
    /// The reason, for the operator.
    Directories(String),
    /// Datasets below this one (`zroot/bastille/jails`).
    Zfs { jails: String },
}

/// rc.subr's `checkyesno`: YES, TRUE, ON or 1 in any case.
fn yes(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "1")
}

/// The value of `key=...` in a shell assignment file, the last one winning:
/// `key="v"`, `key='v'` or `key=v` (a `## comment` after it ignored). `None`
/// when unset; an error when the value needs the shell (`$`, backquotes).
fn assignment(text: &str, key: &str) -> Result<Option<String>, String> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix(key) else {
            continue;
        };
        let Some(v) = rest.strip_prefix('=') else {
            continue;
        };
        let value = match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or("").to_string(),
            _ => v.split_whitespace().next().unwrap_or("").to_string(),
        };
        if value.contains('$') || value.contains('`') {
            return Err(format!(
                "{key} in {BASTILLE_CONF} is {value:?}, which needs the shell to read"
            ));
        }
        found = Some(value);
    }
    Ok(found)
}

/// Where Bastille keeps jails, from bastille.conf's text (`None`: no file).
pub fn storage(conf: Option<&str>) -> Storage {
    let Some(conf) = conf else {
        return Storage::Directories(format!("{BASTILLE_CONF} does not exist"));
    };
    let read = || -> Result<Storage, String> {
        let enable = assignment(conf, "bastille_zfs_enable")?.unwrap_or_default();
        if !yes(&enable) {
            return Ok(Storage::Directories(format!(
                "bastille_zfs_enable is not YES in {BASTILLE_CONF}"
            )));
        }
        let pool = assignment(conf, "bastille_zfs_zpool")?.unwrap_or_default();
        if pool.is_empty() {
            return Ok(Storage::Directories(format!(
                "bastille_zfs_zpool is empty in {BASTILLE_CONF}"
            )));
        }
        let prefix =
            assignment(conf, "bastille_zfs_prefix")?.unwrap_or_else(|| "bastille".to_string());
        Ok(Storage::Zfs {
            jails: format!("{pool}/{prefix}/jails"),
        })
    };
    read().unwrap_or_else(Storage::Directories)
}

/// One snapshot as `zfs list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub dataset: String,
    pub name: String,
    /// Seconds since the epoch.
    pub creation: u64,
}

impl Snapshot {
    pub fn full(&self) -> String {
        format!("{}@{}", self.dataset, self.name)
    }
}

/// What `zfs list` shows: filesystems with their mountpoints, and snapshots
/// (oldest first per dataset, as zfs lists them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub datasets: BTreeMap<String, String>,
    pub snapshots: Vec<Snapshot>,
}

/// The one command that reads every filesystem and snapshot.
pub fn list_argv() -> Vec<String> {
    [
        "zfs",
        "list",
        "-H",
        "-p",
        "-t",
        "filesystem,snapshot",
        "-o",
        "name,creation,mountpoint",
    ]
    .map(str::to_string)
    .to_vec()
}

/// Parse `zfs list -H -p -o name,creation,mountpoint` (tab separated).
pub fn parse_list(out: &str) -> Listing {
    let mut l = Listing::default();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 3 {
            continue;
        }
        match f[0].split_once('@') {
            Some((d, s)) => l.snapshots.push(Snapshot {
                dataset: d.to_string(),
                name: s.to_string(),
                creation: f[1].parse().unwrap_or(0),
            }),
            None => {
                l.datasets.insert(f[0].to_string(), f[2].to_string());
            }
        }
    }
    l
}

/// The snapshot a run takes: `warden-run-42`.
pub fn run_snapshot(run: i64) -> String {
    format!("warden-run-{run}")
}

/// The run a snapshot name belongs to.
pub fn run_of(name: &str) -> Option<i64> {
    let n = name.strip_prefix("warden-run-")?;
    crate::spec::grammar::parse_decimal(n).and_then(|n| i64::try_from(n).ok())
}

impl Listing {
    /// `top` and its descendants, in name order.
    pub fn tree(&self, top: &str) -> Vec<String> {
        let below = format!("{top}/");
        self.datasets
            .keys()
            .filter(|d| *d == top || d.starts_with(&below))
            .cloned()
            .collect()
    }

    /// The dataset mounted exactly at `path`.
    pub fn mounted_at(&self, path: &str) -> Option<String> {
        self.datasets
            .iter()
            .find(|(_, mp)| *mp == path)
            .map(|(d, _)| d.clone())
    }

    pub fn has(&self, dataset: &str, snap: &str) -> bool {
        self.snapshots
            .iter()
            .any(|s| s.dataset == dataset && s.name == snap)
    }

    /// Snapshots of `dataset` taken after `snap`, oldest first.
    pub fn later(&self, dataset: &str, snap: &str) -> Vec<String> {
        self.snapshots
            .iter()
            .filter(|s| s.dataset == dataset)
            .skip_while(|s| s.name != snap)
            .skip(1)
            .map(Snapshot::full)
            .collect()
    }

    /// The highest run number any snapshot name carries (`warden-run-N`).
    pub fn highest_run(&self) -> i64 {
        self.snapshots
            .iter()
            .filter_map(|s| run_of(&s.name))
            .max()
            .unwrap_or(0)
    }

    /// warden's run snapshots of the datasets it snapshots as a whole (a
    /// snapshot whose parent dataset has the same one is part of that), as
    /// (run, dataset, creation), by run then dataset.
    pub fn runs(&self) -> Vec<(i64, String, u64)> {
        let mut out: Vec<(i64, String, u64)> = self
            .snapshots
            .iter()
            .filter_map(|s| {
                let run = run_of(&s.name)?;
                let parent_has = s
                    .dataset
                    .rsplit_once('/')
                    .is_some_and(|(p, _)| self.has(p, &s.name));
                (!parent_has).then(|| (run, s.dataset.clone(), s.creation))
            })
            .collect();
        out.sort();
        out
    }

    /// The run snapshots beyond the newest `keep` of each dataset, oldest first,
    /// as `DATASET@warden-run-N` (destroyed with `zfs destroy -r`). Only those of
    /// the `known` runs (the state DB's) count and go: a snapshot named like
    /// warden's that this host's state did not take (made by hand, or by a run of
    /// a state DB since lost) is never destroyed.
    pub fn prunable(&self, keep: usize, known: &std::collections::BTreeSet<i64>) -> Vec<String> {
        let mut by_dataset: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        let runs = self.runs();
        for (run, d, _) in runs.iter().filter(|(r, _, _)| known.contains(r)) {
            by_dataset.entry(d.as_str()).or_default().push(*run);
        }
        let mut out = Vec::new();
        for (d, mut rs) in by_dataset {
            rs.sort_unstable();
            let extra = rs.len().saturating_sub(keep);
            out.extend(
                rs[..extra]
                    .iter()
                    .map(|r| format!("{d}@{}", run_snapshot(*r))),
            );
        }
        out
    }
}

/// The `zfs snapshot -r` calls that take `snap` of every tree in `tops` at once:
/// one call per pool, since zfs-snapshot(8) creates several snapshots in one
/// transaction only within one pool (lzc_snapshot; across pools the kernel
/// refuses the whole call with EXDEV). A top below another top is left out: `-r`
/// on the upper one takes it already. Pools and names in order.
pub fn snapshot_calls(tops: &[String], snap: &str) -> Vec<Vec<String>> {
    let mut sorted: Vec<&String> = tops.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut kept: Vec<&String> = Vec::new();
    for t in sorted {
        if !kept.iter().any(|k| t.starts_with(&format!("{k}/"))) {
            kept.push(t);
        }
    }
    let mut by_pool: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for t in kept {
        let pool = t.split('/').next().unwrap_or(t);
        by_pool.entry(pool).or_default().push(format!("{t}@{snap}"));
    }
    by_pool
        .into_values()
        .map(|names| {
            let mut argv = vec!["zfs".to_string(), "snapshot".into(), "-r".into()];
            argv.extend(names);
            argv
        })
        .collect()
}

/// The `zfs destroy -r` calls that destroy `snapshots` (`DATASET@NAME`), one per
/// dataset with its names in one comma list (`pool/fs@a,b`, zfs-destroy(8)):
/// zfs destroy takes a single argument, so datasets cannot share a call.
pub fn destroy_calls(snapshots: &[String]) -> Vec<Vec<String>> {
    let mut by_dataset: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in snapshots {
        if let Some((d, n)) = s.split_once('@') {
            by_dataset.entry(d).or_default().push(n);
        }
    }
    by_dataset
        .into_iter()
        .map(|(d, names)| {
            vec![
                "zfs".to_string(),
                "destroy".into(),
                "-r".into(),
                format!("{d}@{}", names.join(",")),
            ]
        })
        .collect()
}

/// What a rollback of one jail or home does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// `jail atlasdb` or `home of atlas`.
    pub what: String,
    /// The jail to stop before and start after, if a jail.
    pub jail: Option<String>,
    /// `DATASET@SNAP` for each dataset of the tree, parent first.
    pub targets: Vec<String>,
    /// Snapshots `zfs rollback -r` destroys because they are later.
    pub destroys: Vec<String>,
    /// When the snapshot was taken (seconds since the epoch).
    pub taken: u64,
}

/// The rollback of `top`'s tree to `snap`, if `top` has that snapshot.
pub fn rollback_of(
    listing: &Listing,
    what: String,
    jail: Option<String>,
    top: &str,
    snap: &str,
) -> Option<Rollback> {
    let taken = listing
        .snapshots
        .iter()
        .find(|s| s.dataset == top && s.name == snap)?
        .creation;
    let tree: Vec<String> = listing
        .tree(top)
        .into_iter()
        .filter(|d| listing.has(d, snap))
        .collect();
    Some(Rollback {
        what,
        jail,
        destroys: tree.iter().flat_map(|d| listing.later(d, snap)).collect(),
        targets: tree.iter().map(|d| format!("{d}@{snap}")).collect(),
        taken,
    })
}

/// The plan `warden rollback` shows before it asks.
pub fn rollback_text(run: i64, steps: &[Rollback]) -> String {
    let mut out = format!(
        "warden rollback returns these to the snapshots run {run} took, losing everything written to them since:\n"
    );
    for r in steps {
        out.push_str(&format!(
            "\n  < {}  (taken {})\n",
            r.what,
            crate::time::format_epoch(r.taken)
        ));
        if let Some(j) = &r.jail {
            out.push_str(&format!("      bastille stop {j}\n"));
        }
        for t in &r.targets {
            out.push_str(&format!("      zfs rollback -r {t}\n"));
        }
        if let Some(j) = &r.jail {
            out.push_str(&format!("      bastille start {j}\n"));
        }
        for d in &r.destroys {
            out.push_str(&format!("      destroys the later snapshot {d}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "zroot\t0\t/zroot\n\
zroot/bastille\t0\t/usr/local/bastille\n\
zroot/bastille/jails\t0\t/usr/local/bastille/jails\n\
zroot/bastille/jails/atlasdb\t0\t/usr/local/bastille/jails/atlasdb\n\
zroot/bastille/jails/atlasdb@warden-run-3\t100\t-\n\
zroot/bastille/jails/atlasdb@warden-run-5\t200\t-\n\
zroot/bastille/jails/atlasdb@manual\t300\t-\n\
zroot/bastille/jails/atlasdb/root\t0\t/usr/local/bastille/jails/atlasdb/root\n\
zroot/bastille/jails/atlasdb/root@warden-run-3\t100\t-\n\
zroot/bastille/jails/atlasdb/root@warden-run-5\t200\t-\n\
zroot/bastille/jails/atlasdb/root@manual\t300\t-\n\
zroot/home/atlas\t0\t/home/atlas\n";

    #[test]
    fn bastille_conf_says_where_jails_live() {
        let conf = "bastille_prefix=\"/usr/local/bastille\"\nbastille_zfs_enable=\"YES\"   ## default: \"NO\"\nbastille_zfs_zpool=\"zroot\"\n";
        assert_eq!(
            storage(Some(conf)),
            Storage::Zfs {
                jails: "zroot/bastille/jails".into()
            }
        );
        assert!(matches!(
            storage(Some("bastille_zfs_enable=\"NO\"\n")),
            Storage::Directories(_)
        ));
        assert!(matches!(
            storage(Some("bastille_zfs_enable=yes\nbastille_zfs_zpool=\"\"\n")),
            Storage::Directories(why) if why.contains("zpool is empty")
        ));
        assert!(matches!(
            storage(Some("bastille_zfs_enable=on\nbastille_zfs_zpool=\"${POOL}\"\n")),
            Storage::Directories(why) if why.contains("needs the shell")
        ));
        assert!(matches!(storage(None), Storage::Directories(_)));
    }

    #[test]
    fn lists_runs_and_prunes_the_oldest() {
        let l = parse_list(LIST);
        assert_eq!(
            l.runs(),
            vec![
                (3, "zroot/bastille/jails/atlasdb".to_string(), 100),
                (5, "zroot/bastille/jails/atlasdb".to_string(), 200)
            ]
        );
        let known = [3, 5].into_iter().collect();
        assert_eq!(
            l.prunable(1, &known),
            vec!["zroot/bastille/jails/atlasdb@warden-run-3".to_string()]
        );
        assert!(l.prunable(2, &known).is_empty());
        // A run the state DB does not know is neither counted nor destroyed.
        let only_5 = [5].into_iter().collect();
        assert!(l.prunable(1, &only_5).is_empty());
        assert_eq!(l.highest_run(), 5);
        assert_eq!(
            l.mounted_at("/home/atlas").as_deref(),
            Some("zroot/home/atlas")
        );
    }

    #[test]
    fn one_snapshot_call_per_pool_and_one_destroy_per_dataset() {
        let tops: Vec<String> = [
            "zroot/bastille/jails/atlasdb",
            "zroot/home/atlas",
            "tank/home/clawdie",
            "zroot/bastille/jails/atlasgit",
            "zroot/bastille/jails/atlasdb/root",
            "zroot/home/atlas",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            snapshot_calls(&tops, "warden-run-7"),
            vec![
                vec!["zfs", "snapshot", "-r", "tank/home/clawdie@warden-run-7"],
                vec![
                    "zfs",
                    "snapshot",
                    "-r",
                    "zroot/bastille/jails/atlasdb@warden-run-7",
                    "zroot/bastille/jails/atlasgit@warden-run-7",
                    "zroot/home/atlas@warden-run-7"
                ],
            ]
        );
        assert!(snapshot_calls(&[], "warden-run-7").is_empty());
        let gone: Vec<String> = [
            "zroot/bastille/jails/atlasdb@warden-run-3",
            "zroot/home/atlas@warden-run-3",
            "zroot/bastille/jails/atlasdb@warden-run-5",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            destroy_calls(&gone),
            vec![
                vec![
                    "zfs",
                    "destroy",
                    "-r",
                    "zroot/bastille/jails/atlasdb@warden-run-3,warden-run-5"
                ],
                vec!["zfs", "destroy", "-r", "zroot/home/atlas@warden-run-3"],
            ]
        );
    }

    #[test]
    fn rolling_back_to_an_older_run_destroys_the_later_snapshots() {
        let l = parse_list(LIST);
        let r = rollback_of(
            &l,
            "jail atlasdb".into(),
            Some("atlasdb".into()),
            "zroot/bastille/jails/atlasdb",
            "warden-run-3",
        )
        .unwrap();
        assert_eq!(
            r.targets,
            vec![
                "zroot/bastille/jails/atlasdb@warden-run-3",
                "zroot/bastille/jails/atlasdb/root@warden-run-3"
            ]
        );
        assert_eq!(
            r.destroys,
            vec![
                "zroot/bastille/jails/atlasdb@warden-run-5",
                "zroot/bastille/jails/atlasdb@manual",
                "zroot/bastille/jails/atlasdb/root@warden-run-5",
                "zroot/bastille/jails/atlasdb/root@manual"
            ]
        );
        assert!(rollback_of(&l, "x".into(), None, "zroot/home/atlas", "warden-run-3").is_none());
        assert_eq!(run_of("warden-run-42"), Some(42));
        assert_eq!(run_of("warden-run-x"), None);
    }
}
