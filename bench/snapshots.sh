#!/bin/sh
# How many `zfs` calls does a run make for its snapshots, and for pruning them?
#
#   bench/snapshots.sh [-a AGENTS] [-k KEEP] [-w WARDEN]
#
# For each fleet size (roles git,cms,db: three jails each), on tests/fakebsd with
# Bastille's jails on ZFS: a first apply, then RUNS applies that each change every
# jail (each jail's Bastillefile edited by hand, so every jail tree is snapshotted),
# with snapshot_keep = KEEP, so the later runs also prune. Counted from the fake's
# log of the last run: the `zfs snapshot` calls, the snapshot trees they named
# (what one call per tree, before, would have made), and the `zfs destroy` calls
# with the snapshots they destroyed.
#
#   -a AGENTS  comma-separated fleet sizes (default 5,20,50)
#   -k KEEP    snapshot_keep (default 1)
#   -r RUNS    applies that change every jail (default 3)
#   -w WARDEN  the binary (default: target/release/warden, else target/debug/warden)
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
sizes=5,20,50
keep=1
runs=3
warden=${CARGO_TARGET_DIR:-$here/target}/release/warden
[ -x "$warden" ] || warden=${CARGO_TARGET_DIR:-$here/target}/debug/warden
while getopts a:k:r:w: opt; do
	case $opt in
	a) sizes=$OPTARG ;;
	k) keep=$OPTARG ;;
	r) runs=$OPTARG ;;
	w) warden=$OPTARG ;;
	*) sed -n '2,17p' "$0" >&2; exit 1 ;;
	esac
done
[ -x "$warden" ] || { echo "no warden binary at $warden: cargo build, or pass -w" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fake() {
	fk_cmd=$1
	shift
	FAKEBSD_ROOT=$root FAKEBSD_ZPOOLS=zroot FAKEBSD_INTERNAL=1 "$here/tests/fakebsd/$fk_cmd" "$@"
}

run() {
	PATH=$here/tests/fakebsd:$PATH FAKEBSD_ROOT=$root FAKEBSD_IFACES=igb0 \
		"$warden" --config "$dir/warden.toml" apply --yes --root "$root" \
		>"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
}

echo "| agents | jails | zfs snapshot calls | trees snapshotted | zfs destroy calls | snapshots destroyed |"
echo "|-------:|------:|-------------------:|------------------:|------------------:|--------------------:|"
for n in $(echo "$sizes" | tr , ' '); do
	dir=$work/fleet-$n
	root=$work/root-$n
	mkdir -p "$dir/agents" "$root/usr/local/etc/bastille"
	printf 'ext_if = "igb0"\nsnapshot_keep = %s\n' "$keep" >"$dir/warden.toml"
	i=0
	while [ "$i" -lt "$n" ]; do
		printf 'AGENT_NAME=a%03d\nAGENT_SUBNET_BASE=10.%d.%d\nWARDEN_ROLES=git,cms,db\n' \
			"$i" $((i / 250)) $((i % 250)) >"$dir/agents/$(printf 'a%03d' "$i").env"
		i=$((i + 1))
	done
	printf 'bastille_prefix="/usr/local/bastille"\nbastille_zfs_enable="YES"\nbastille_zfs_zpool="zroot"\n' \
		>"$root/usr/local/etc/bastille/bastille.conf"
	fake zfs create -o mountpoint=/usr/local/bastille zroot/bastille
	fake zfs create zroot/bastille/jails
	run
	r=0
	while [ "$r" -lt "$runs" ]; do
		for f in "$root"/usr/local/bastille/templates/warden/*/Bastillefile; do
			echo "# edited by hand" >>"$f"
		done
		rm -f "$root/var/log/fakebsd.log"
		run
		r=$((r + 1))
	done
	log=$root/var/log/fakebsd.log
	snaps=$(grep -c '^MUT zfs snapshot ' "$log" || :)
	trees=$(grep '^MUT zfs snapshot ' "$log" | awk '{ n += NF - 4 } END { print n + 0 }')
	destroys=$(grep -c '^MUT zfs destroy ' "$log" || :)
	destroyed=$(grep '^MUT zfs destroy ' "$log" | awk '{ n += split($NF, a, ",") } END { print n + 0 }')
	printf '| %d | %d | %d | %d | %d | %d |\n' "$n" $((n * 3)) "$snaps" "$trees" "$destroys" "$destroyed"
	rm -rf "$root"
done
