#!/bin/sh
# No-op apply and plan of two warden binaries on the same applied root, run
# alternately, so both see the same (possibly loaded) machine.
#
#   bench/compare.sh [-a AGENTS] [-r RUNS] BEFORE AFTER
#
# A fleet of AGENTS agents (roles git,cms,db; default 10) is applied once with
# AFTER on tests/fakebsd; then, RUNS times (default 5): `apply --yes` with
# BEFORE, with AFTER, `plan` with BEFORE, with AFTER. It prints the median of
# each and the ratio AFTER / BEFORE. Every no-op apply must make no mutating
# call (the fakebsd log gains no MUT line).
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
agents=10
runs=5
while getopts a:r: opt; do
	case $opt in
	a) agents=$OPTARG ;;
	r) runs=$OPTARG ;;
	*) sed -n '2,12p' "$0" >&2; exit 1 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { sed -n '2,12p' "$0" >&2; exit 1; }
before=$1 after=$2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/agents" "$work/root"
printf 'ext_if = "igb0"\nagents_dir = "agents"\n' >"$work/warden.toml"
i=0
while [ "$i" -lt "$agents" ]; do
	n=$(printf 'a%03d' "$i")
	printf 'AGENT_NAME=%s\nAGENT_SUBNET_BASE=10.%d.%d\nWARDEN_ROLES=git,cms,db\n' \
		"$n" $((i / 250)) $((i % 250)) >"$work/agents/$n.env"
	i=$((i + 1))
done

# w BINARY ARGS... : run warden on the fake host
w() {
	b=$1
	shift
	PATH=$here/tests/fakebsd:$PATH FAKEBSD_ROOT=$work/root FAKEBSD_IFACES=igb0 \
		"$b" --config "$work/warden.toml" "$@" --root "$work/root"
}

# timed FILE BINARY ARGS... : append the wall time of one run to FILE
timed() {
	f=$1
	shift
	t0=$(date +%s.%N)
	w "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc >>"$f"
}

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

w "$after" apply --yes >"$work/first" 2>&1 || { cat "$work/first" >&2; exit 1; }
log=$work/root/var/log/fakebsd.log
muts=$(grep -c '^MUT' "$log")
r=0
while [ "$r" -lt "$runs" ]; do
	timed "$work/noop.before" "$before" apply --yes
	timed "$work/noop.after" "$after" apply --yes
	timed "$work/plan.before" "$before" plan
	timed "$work/plan.after" "$after" plan
	r=$((r + 1))
done
[ "$(grep -c '^MUT' "$log")" -eq "$muts" ] || { echo "a no-op apply changed the host" >&2; exit 1; }

echo "$agents agents, $runs runs each, medians in seconds"
echo
echo "| | before | after | after / before |"
echo "|---|---:|---:|---:|"
for k in noop plan; do
	b=$(median "$work/$k.before")
	a=$(median "$work/$k.after")
	printf '| %s | %.3f | %.3f | %.2f |\n' "$k" "$b" "$a" "$(echo "scale=3; $a / $b" | bc)"
done
