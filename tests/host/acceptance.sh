#!/bin/sh
# warden's acceptance run on a real host: a scratch FreeBSD 15 machine, as root.
#
#   sh tests/host/acceptance.sh [-k] [-w WARDEN] [-i EXT_IF] [-r RELEASE]
#
# It builds a two-agent fleet (jails accagit, accadb and accbgit, accbdb on
# bridge warden9, subnets 10.250.1.0/24 and 10.250.2.0/24) in a temporary
# directory, applies it, applies again (nothing may change), changes a template
# and applies (must succeed on the running jails), checks with real traffic that
# agent A reaches its own database and none of B's jails (also from a jail with a
# spoofed source address), that PF is enabled, that every jail's /dev is filtered
# and that `warden status` is healthy; then it destroys agent B without and with
# --purge, agent A with --purge, and checks that the host is as it found it.
# One line per check (ok/FAIL), a summary, exit 0 only when every check passed.
#
# Needs: bastille (sysutils/bastille) with RELEASE bootstrapped, nc(1), and the
# warden binary (-w, else `warden` on PATH, else target/release/warden). The
# host's own files warden edits (rc.conf, pf.conf, devfs.rules, sysctl.conf,
# loader.conf, rctl.conf) are copied first and put back at the end.
# -k keeps the temporary directory. Never run it on a host that matters.

set -u

usage() {
	echo "usage: sh tests/host/acceptance.sh [-k] [-w WARDEN] [-i EXT_IF] [-r RELEASE]" >&2
	exit 2
}

KEEP=0
WARDEN=
EXT_IF=
RELEASE=15.0-RELEASE
while getopts kw:i:r: opt; do
	case $opt in
	k) KEEP=1 ;;
	w) WARDEN=$OPTARG ;;
	i) EXT_IF=$OPTARG ;;
	r) RELEASE=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage

# ---- refuse anywhere but a FreeBSD 15 host, as root ----------------------------------
if [ "$(uname -s)" != FreeBSD ]; then
	echo "acceptance.sh: refusing to run on $(uname -s): it needs a scratch FreeBSD 15 host" >&2
	exit 2
fi
case $(uname -r) in
15.*) ;;
*)
	echo "acceptance.sh: refusing to run on FreeBSD $(uname -r): it needs FreeBSD 15" >&2
	exit 2
	;;
esac
if [ "$(id -u)" -ne 0 ]; then
	echo "acceptance.sh: refusing to run as $(id -un): it needs root" >&2
	exit 2
fi

HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
REPO=$(CDPATH='' cd -- "$HERE/../.." && pwd)
if [ -z "$WARDEN" ]; then
	if command -v warden >/dev/null 2>&1; then
		WARDEN=$(command -v warden)
	else
		WARDEN=$REPO/target/release/warden
	fi
fi
[ -x "$WARDEN" ] || {
	echo "acceptance.sh: no warden binary at $WARDEN (build it: cargo build --release, or pass -w)" >&2
	exit 2
}
for tool in bastille nc jexec jls pfctl devfs sysrc; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "acceptance.sh: $tool is missing" >&2
		exit 2
	}
done
if [ -z "$EXT_IF" ]; then
	EXT_IF=$(route -n get default 2>/dev/null | awk '/interface:/ { print $2 }')
fi
[ -n "$EXT_IF" ] || {
	echo "acceptance.sh: no default route; pass the external interface with -i" >&2
	exit 2
}
if ! bastille list releases 2>/dev/null | grep -qx "$RELEASE"; then
	echo "acceptance.sh: release $RELEASE is not bootstrapped (bastille bootstrap $RELEASE)" >&2
	exit 2
fi

# ---- reporting ----------------------------------------------------------------------
PASSED=0
FAILED=0
ok() {
	PASSED=$((PASSED + 1))
	echo "ok   - $*"
}
fail() {
	FAILED=$((FAILED + 1))
	echo "FAIL - $*"
}
# check DESCRIPTION COMMAND...: ok when COMMAND exits 0
check() {
	ck_what=$1
	shift
	if "$@" >>"$LOG" 2>&1; then ok "$ck_what"; else fail "$ck_what (see $LOG)"; fi
}
# refute DESCRIPTION COMMAND...: ok when COMMAND fails
refute() {
	rf_what=$1
	shift
	if "$@" >>"$LOG" 2>&1; then fail "$rf_what (see $LOG)"; else ok "$rf_what"; fi
}

WORK=$(mktemp -d /tmp/warden-acceptance.XXXXXX)
LOG=$WORK/acceptance.log
: >"$LOG"
FLEET=$WORK/fleet
mkdir -p "$FLEET/agents"

# ---- the host as it was ----------------------------------------------------------------
SAVED=$WORK/saved
mkdir -p "$SAVED"
HOST_FILES="/etc/rc.conf /etc/pf.conf /etc/devfs.rules /etc/sysctl.conf /boot/loader.conf /etc/rctl.conf"
for f in $HOST_FILES; do
	name=$(echo "$f" | tr / _)
	if [ -f "$f" ]; then cp -p "$f" "$SAVED/$name"; else : >"$SAVED/$name.absent"; fi
done
snapshot() { # DIR: what the end of the run compares
	mkdir -p "$1"
	for f in $HOST_FILES; do
		name=$(echo "$f" | tr / _)
		if [ -f "$f" ]; then cp "$f" "$1/$name"; fi
	done
	ifconfig -l | tr ' ' '\n' | sort >"$1/interfaces"
	bastille list jails 2>/dev/null | sort >"$1/jails"
	pw usershow -a 2>/dev/null | cut -d: -f1 | sort >"$1/users"
	ls /usr/local/etc/rc.d >"$1/rc.d"
	kldstat -q -m pf && echo loaded >"$1/pf.ko" || echo absent >"$1/pf.ko"
	pfctl -s info 2>/dev/null | awk '/^Status:/ { print $2 }' >"$1/pf.status"
}
snapshot "$WORK/before"
PF_WAS_LOADED=$(cat "$WORK/before/pf.ko")
PF_WAS=$(cat "$WORK/before/pf.status")

cleanup() {
	for j in accagit accadb accbgit accbdb; do
		if bastille list jails 2>/dev/null | grep -qx "$j"; then
			bastille destroy -a -y "$j" >>"$LOG" 2>&1
		fi
	done
	for u in acca accb; do
		pw usershow "$u" >/dev/null 2>&1 && pw userdel "$u" -r >>"$LOG" 2>&1
	done
	for f in $HOST_FILES; do
		name=$(echo "$f" | tr / _)
		if [ -f "$SAVED/$name" ]; then
			cp -p "$SAVED/$name" "$f"
		elif [ -f "$SAVED/$name.absent" ]; then
			rm -f "$f"
		fi
	done
	rm -f /etc/pf.warden-acceptance.conf /usr/local/etc/rc.d/acca /usr/local/etc/rc.d/accb
	if [ "$PF_WAS" = Disabled ] || [ "$PF_WAS_LOADED" = absent ]; then
		pfctl -d >>"$LOG" 2>&1
	fi
	[ -f /etc/pf.conf ] && pfctl -f /etc/pf.conf >>"$LOG" 2>&1
	[ "$PF_WAS_LOADED" = absent ] && kldunload pf >>"$LOG" 2>&1
	service devfs restart >>"$LOG" 2>&1
	if ifconfig warden9 >/dev/null 2>&1; then ifconfig warden9 destroy; fi
}

# ---- the fleet ------------------------------------------------------------------------
cat >"$FLEET/warden.toml" <<EOF
ext_if = "$EXT_IF"
bridge = "warden9"
release = "$RELEASE"
pf_include = "/etc/pf.warden-acceptance.conf"
state_db = "$WORK/state.db"
agents_dir = "agents"
EOF
for a in acca:1 accb:2; do
	name=${a%%:*}
	net=${a#*:}
	cat >"$FLEET/agents/$name.env" <<EOF
AGENT_NAME=$name
AGENT_SUBNET_BASE=10.250.$net
WARDEN_ROLES=git,db
AGENT_COMMAND="/bin/sleep 86400"
EOF
	printf 'DB_PASSWORD=acceptance-%s-%s\n' "$name" "$$" >"$FLEET/agents/$name.secrets.env"
	chmod 0600 "$FLEET/agents/$name.secrets.env"
done
W() { "$WARDEN" --config "$FLEET/warden.toml" "$@"; }

echo "# warden acceptance on $(uname -n) (FreeBSD $(uname -r)), external interface $EXT_IF"
echo "# work directory $WORK"

# ---- apply, apply again, change a template, apply ------------------------------------
check "check: the fleet is valid" W check
check "apply: the first apply succeeds" W apply --yes
check "apply again: nothing to change (plan --detailed-exitcode exits 0)" W plan --detailed-exitcode
check "apply again: the second apply succeeds" W apply --yes
mkdir -p "$WORK/templates/templates/git"
cp "$REPO/templates/git/Bastillefile.tera" "$WORK/templates/templates/git/Bastillefile.tera"
echo "# acceptance: a changed template" >>"$WORK/templates/templates/git/Bastillefile.tera"
# shellcheck disable=SC2016 # expanded by the inner sh
check "changed template: the plan rebuilds the git jails' templates" \
	sh -c '"$1" --config "$2" plan --templates "$3" | grep -q "template:accagit"' sh "$WARDEN" "$FLEET/warden.toml" "$WORK/templates"
check "changed template: apply on the running jails succeeds" W apply --yes --templates "$WORK/templates"
check "changed template: then nothing to change" W plan --detailed-exitcode --templates "$WORK/templates"

# ---- PF and devfs ----------------------------------------------------------------------
check "pf: pf.ko is loaded" kldstat -q -m pf
check "pf: PF is enabled" sh -c 'pfctl -s info | grep -q "^Status: Enabled"'
check "pf: warden's anchor has rules" sh -c 'pfctl -a warden -sr | grep -q .'
for j in accagit accadb accbgit accbdb; do
	rs=$(jls -j "$j" devfs_ruleset 2>/dev/null)
	if [ -n "$rs" ] && [ "$rs" -ne 0 ] && [ -n "$(devfs rule -s "$rs" show 2>/dev/null)" ]; then
		ok "devfs: $j runs under loaded ruleset $rs"
	else
		fail "devfs: $j runs under ruleset '${rs:-?}', which the kernel does not have"
	fi
	refute "devfs: $j does not see /dev/mem" jexec "$j" test -e /dev/mem
	refute "devfs: $j does not see /dev/kmem" jexec "$j" test -e /dev/kmem
done
# shellcheck disable=SC2016 # expanded by the inner sh
check "sysvshm: accadb runs with sysvshm=new" sh -c '[ "$(jls -j accadb sysvshm)" = new ]'

# ---- real traffic ----------------------------------------------------------------------
check "traffic: agent A's user reaches its own database (10.250.1.5:5432)" \
	su -m acca -c "nc -z -w 5 10.250.1.5 5432"
refute "traffic: agent A's user does not reach B's database (10.250.2.5:5432)" \
	su -m acca -c "nc -z -w 5 10.250.2.5 5432"
refute "traffic: agent A's user does not reach B's git jail (10.250.2.2:22)" \
	su -m acca -c "nc -z -w 5 10.250.2.2 22"
check "traffic: A's git jail reaches A's database" jexec accagit nc -z -w 5 10.250.1.5 5432
refute "traffic: A's git jail does not reach B's database" jexec accagit nc -z -w 5 10.250.2.5 5432
# root in A's jail takes an address of B's subnet: the bridge must drop it
if jexec accagit ifconfig vnet0 inet 10.250.2.77/32 alias >>"$LOG" 2>&1; then
	refute "traffic: a spoofed B source from A's jail does not reach B's database" \
		jexec accagit nc -s 10.250.2.77 -z -w 5 10.250.2.5 5432
	jexec accagit ifconfig vnet0 inet 10.250.2.77 -alias >>"$LOG" 2>&1
else
	fail "traffic: could not add the spoofed address in accagit (see $LOG)"
fi
check "status: warden status is healthy" W status

# ---- destroy ---------------------------------------------------------------------------
check "destroy: agent B without --purge" W destroy --agent accb --yes
check "destroy: B's jails are kept, stopped" sh -c 'bastille list jails | grep -qx accbdb && ! jls -j accbdb >/dev/null 2>&1'
check "destroy: A still converged" W plan --detailed-exitcode --agent acca
check "destroy: agent B with --purge" W destroy --agent accb --purge --no-backup --yes
refute "destroy: B's jails are gone" sh -c 'bastille list jails | grep -qx accbdb'
refute "destroy: B's user is gone" pw usershow accb
check "destroy: agent A with --purge" W destroy --agent acca --purge --no-backup --yes
refute "destroy: A's jails are gone" sh -c 'bastille list jails | grep -qx accadb'

# ---- the host as it was ----------------------------------------------------------------
cleanup
snapshot "$WORK/after"
for f in $(cd "$WORK/before" && ls); do
	if cmp -s "$WORK/before/$f" "$WORK/after/$f"; then
		ok "host: $f as before"
	else
		fail "host: $f differs (diff $WORK/before/$f $WORK/after/$f)"
	fi
done

echo "# $PASSED passed, $FAILED failed"
if [ "$KEEP" -eq 0 ] && [ "$FAILED" -eq 0 ]; then
	rm -rf "$WORK"
else
	echo "# kept $WORK"
fi
[ "$FAILED" -eq 0 ]
