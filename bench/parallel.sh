#!/bin/sh
# How much of the time `bastille create` and `bastille template` take does a
# first apply add, against running them one after another (the serial bound)?
#
#   bench/parallel.sh [-d DELAY] [-a AGENTS] [-j JOBS] [-w WARDEN]
#   bench/parallel.sh -f [-a AGENTS] [-w WARDEN]     # count fsync calls instead
#
# For each number of agents (roles git,cms,db: three jails each) and each --jobs
# value, a first apply runs twice in fresh roots on tests/fakebsd: once with
# FAKEBSD_DELAY_BASTILLE=DELAY, once without. The difference is the time the
# delays added; the serial bound is DELAY times the number of bastille create and
# template calls the run made. Both runs happen back to back, so the ratio holds
# on a loaded machine even when the absolute times do not.
#
#   -d DELAY   seconds per bastille create/template (default 2)
#   -a AGENTS  comma-separated fleet sizes (default 5,20)
#   -j JOBS    comma-separated --jobs values; "-" runs without --jobs, for a
#              warden that has no such option (default 1,4,8,-)
#   -w WARDEN  the binary (default: target/release/warden, built by
#              `cargo build --release`)
#   -f         print the fsync/fdatasync count of each first apply instead
#              (strace -f -c), with the default jobs
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
delay=2
sizes=5,20
jobs_list=1,4,8,-
warden=${CARGO_TARGET_DIR:-$here/target}/release/warden
fsync=
while getopts d:a:j:w:f opt; do
	case $opt in
	d) delay=$OPTARG ;;
	a) sizes=$OPTARG ;;
	j) jobs_list=$OPTARG ;;
	w) warden=$OPTARG ;;
	f) fsync=1 ;;
	*) sed -n '2,22p' "$0" >&2; exit 1 ;;
	esac
done
[ -x "$warden" ] || { echo "no warden binary at $warden: cargo build --release, or pass -w" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fleet N : a config directory with N agents under $work/fleet-N
fleet() {
	fl_d=$work/fleet-$1
	[ -d "$fl_d" ] && return 0
	mkdir -p "$fl_d/agents"
	printf 'ext_if = "igb0"\nagents_dir = "agents"\n' >"$fl_d/warden.toml"
	fl_i=0
	while [ "$fl_i" -lt "$1" ]; do
		fl_n=$(printf 'a%03d' "$fl_i")
		printf 'AGENT_NAME=%s\nAGENT_SUBNET_BASE=10.%d.%d\nWARDEN_ROLES=git,cms,db\n' \
			"$fl_n" $((fl_i / 250)) $((fl_i % 250)) >"$fl_d/agents/$fl_n.env"
		fl_i=$((fl_i + 1))
	done
}

now() { date +%s.%N; }

# apply N JOBS DELAY : first apply into a fresh root; prints "seconds calls"
apply() {
	fleet "$1"
	root=$(mktemp -d "$work/root.XXXXXX")
	set -- "$@" "$root"
	jobs_arg=
	[ "$2" = - ] || jobs_arg="--jobs $2"
	t0=$(now)
	# shellcheck disable=SC2086
	PATH=$here/tests/fakebsd:$PATH FAKEBSD_ROOT=$root FAKEBSD_IFACES=igb0 \
		FAKEBSD_DELAY_BASTILLE=$3 \
		"$warden" --config "$work/fleet-$1/warden.toml" apply --yes --root "$root" $jobs_arg \
		>"$root.out" 2>&1 || { cat "$root.out" >&2; exit 1; }
	t1=$(now)
	calls=$(grep -cE '^MUT bastille (create|template) ' "$root/var/log/fakebsd.log")
	echo "$(echo "$t1 - $t0" | bc) $calls"
	rm -rf "$root" "$root.out"
}

if [ -n "$fsync" ]; then
	command -v strace >/dev/null || { echo "strace is not installed" >&2; exit 1; }
	echo "| agents | fsync + fdatasync calls |"
	echo "|-------:|------------------------:|"
	for n in $(echo "$sizes" | tr , ' '); do
		fleet "$n"
		root=$(mktemp -d "$work/root.XXXXXX")
		PATH=$here/tests/fakebsd:$PATH FAKEBSD_ROOT=$root FAKEBSD_IFACES=igb0 \
			strace -f -c -e trace=fsync,fdatasync -o "$work/strace" \
			"$warden" --config "$work/fleet-$n/warden.toml" apply --yes --root "$root" >/dev/null
		calls=$(awk '$NF == "fsync" || $NF == "fdatasync" { n += $4 } END { print n + 0 }' "$work/strace")
		echo "| $n | $calls |"
		rm -rf "$root"
	done
	exit 0
fi

echo "delay per bastille create/template: $delay s"
echo
echo "| agents | jobs | calls | serial bound s | with delay s | without s | added s | added / bound |"
echo "|-------:|-----:|------:|---------------:|-------------:|----------:|--------:|--------------:|"
for n in $(echo "$sizes" | tr , ' '); do
	for j in $(echo "$jobs_list" | tr , ' '); do
		# shellcheck disable=SC2046 # two numbers, split on purpose
		set -- $(apply "$n" "$j" "$delay")
		slow=$1 calls=$2
		# shellcheck disable=SC2046
		set -- $(apply "$n" "$j" 0)
		fast=$1
		bound=$(echo "$calls * $delay" | bc)
		added=$(echo "$slow - $fast" | bc)
		ratio=$(echo "scale=2; $added / $bound" | bc)
		printf '| %d | %s | %d | %.0f | %.1f | %.1f | %.1f | %s |\n' \
			"$n" "$j" "$calls" "$bound" "$slow" "$fast" "$added" "$ratio"
	done
done
