#!/bin/sh
# What do packages cost a first apply, with the host's repository against
# per-jail downloads?
#
#   bench/packages.sh [-d DELAY] [-a AGENTS] [-w WARDEN]
#
# A fleet of AGENTS agents (roles git, cms, db: three jails each) is applied into
# fresh roots on tests/fakebsd, four times back to back:
#   repo      warden's templates: every jail installs from the host's repository
#   per-jail  the same templates without the MOUNT of the repository, and
#             warden.conf (which warden puts into every jail with the template's
#             files) removed in the jail first (passed with --templates): every
#             jail bootstraps pkg,
#             downloads FreeBSD's catalogues and each of its packages itself, as
#             jails did before the host's repository
# each once with FAKEBSD_PKG_DELAY=DELAY (a fixed cost per network fetch in the
# fake pkg) and once without. The difference is the time the downloads added.
# The per-jail runs also build the host's repository (their templates still have
# PKG lines); the time its change took in the run with delays (apply's own
# timing of packages:RELEASE) is taken out of their added time.
#
#   -d DELAY   seconds per network fetch (default 0.5)
#   -a AGENTS  the fleet size (default 20)
#   -w WARDEN  the binary (default: target/release/warden)
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
delay=0.5
agents=20
warden=${CARGO_TARGET_DIR:-$here/target}/release/warden
while getopts d:a:w: opt; do
	case $opt in
	d) delay=$OPTARG ;;
	a) agents=$OPTARG ;;
	w) warden=$OPTARG ;;
	*) sed -n '2,24p' "$0" >&2; exit 1 ;;
	esac
done
[ -x "$warden" ] || { echo "no warden binary at $warden: cargo build --release, or pass -w" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/fleet/agents"
printf 'ext_if = "igb0"\nagents_dir = "agents"\n' >"$work/fleet/warden.toml"
i=0
while [ "$i" -lt "$agents" ]; do
	n=$(printf 'a%03d' "$i")
	printf 'AGENT_NAME=%s\nAGENT_SUBNET_BASE=10.%d.%d\nWARDEN_ROLES=git,cms,db\n' \
		"$n" $((i / 250)) $((i % 250)) >"$work/fleet/agents/$n.env"
	i=$((i + 1))
done

# The per-jail templates: warden's, without the repository's MOUNT, and with the
# repository configuration warden unpacked into the jail removed before PKG.
for role in git cms db; do
	mkdir -p "$work/perjail/templates/$role"
	sed -e 's|^MOUNT .*packages.*$|CMD rm -f /usr/local/etc/pkg/repos/warden.conf|' \
		"$here/templates/$role/Bastillefile.tera" \
		>"$work/perjail/templates/$role/Bastillefile.tera"
	grep -q '^CMD rm -f /usr/local/etc/pkg/repos/warden.conf' \
		"$work/perjail/templates/$role/Bastillefile.tera" ||
		{ echo "templates/$role: no MOUNT of the repository to replace" >&2; exit 1; }
done

now() { date +%s.%N; }

# apply MODE DELAY : a first apply into a fresh root, prepared as an operator's
# host (the release bootstrapped); prints "seconds net_packages distinct
# net_catalogues jail_net_fetches packages_change_seconds"
apply() {
	root=$(mktemp -d "$work/root.XXXXXX")
	mkdir -p "$root/usr/local/bastille/releases/15.0-RELEASE/usr/bin"
	echo "FreeBSD:15:amd64" >"$root/usr/local/bastille/releases/15.0-RELEASE/usr/bin/uname"
	tpl=
	[ "$1" = per-jail ] && tpl="--templates $work/perjail"
	t0=$(now)
	# shellcheck disable=SC2086
	PATH=$here/tests/fakebsd:$PATH FAKEBSD_ROOT=$root FAKEBSD_IFACES=igb0 \
		FAKEBSD_PKG_DELAY=$2 \
		"$warden" --config "$work/fleet/warden.toml" $tpl apply --yes --root "$root" \
		>"$root.out" 2>&1 || { tail -40 "$root.out" >&2; exit 1; }
	t1=$(now)
	log=$root/var/fakebsd/pkg.log
	net=$(awk '$1 == "net" && $2 == "package"' "$log" | wc -l)
	distinct=$(awk '$1 == "net" && $2 == "package" { print $3 }' "$log" | sort -u | wc -l)
	cats=$(awk '$1 == "net" && $2 == "catalogue"' "$log" | wc -l)
	jailnet=$(awk '$1 == "net" && $5 ~ /^jail:/' "$log" | wc -l)
	# the progress line of the repository's change: "done + packages:REL (12.3 s)"
	pk=$(sed -n 's/^done + packages:[^ ]* (\([0-9.]*\) s)$/\1/p' "$root.out" | head -n 1)
	echo "$(echo "$t1 - $t0" | bc) $net $distinct $cats $jailnet ${pk:-0}"
	rm -rf "$root" "$root.out"
}

echo "$agents agents (git, cms, db), delay per network fetch: $delay s"
echo
echo "| mode | network package fetches | distinct packages | catalogue downloads | fetches by jails | with delay s | without s | added s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for mode in repo per-jail; do
	# shellcheck disable=SC2046 # numbers, split on purpose
	set -- $(apply "$mode" "$delay")
	slow=$1 net=$2 distinct=$3 cats=$4 jailnet=$5 pk=$6
	# shellcheck disable=SC2046
	set -- $(apply "$mode" 0)
	fast=$1
	added=$(echo "$slow - $fast" | bc)
	printf '| %s | %d | %d | %d | %d | %.1f | %.1f | %.1f |\n' \
		"$mode" "$net" "$distinct" "$cats" "$jailnet" "$slow" "$fast" "$added"
	eval "added_$(echo "$mode" | tr - _)=$added"
	[ "$mode" = per-jail ] && perjail_repo=$pk
done
# shellcheck disable=SC2154 # set by the eval above
perjail_only=$(echo "$added_per_jail - $perjail_repo" | bc)
echo
echo "per-jail added, without its own repository build ($perjail_repo s): $perjail_only s"
# shellcheck disable=SC2154
echo "repo added / per-jail added: $(echo "scale=2; $added_repo / $perjail_only" | bc)"
