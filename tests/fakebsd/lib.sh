#!/bin/sh
# Shared helpers for the fakebsd simulated FreeBSD userland.
#
# Every fake command does:
#     FB_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
#     . "$FB_DIR/lib.sh"
# then classifies its own argv as MUT (changes state) or RO (read-only)
# and calls `fb_begin MUT|RO "$@"` before doing anything else.
#
# Environment understood here (see README.md):
#   FAKEBSD_ROOT        simulated root directory (state under var/fakebsd)
#   FAKEBSD_FAIL        case(1) glob(s), one per line, matched against the
#                       joined command line; a match fails the call
#   FAKEBSD_KILL_AFTER  after N MUT calls, the next MUT call SIGKILLs $PPID
#   FAKEBSD_DELAY_BASTILLE  seconds bastille create and template take
#   FAKEBSD_HANG        case(1) glob; a matching call hangs (a stuck command)
#   FAKEBSD_INTERNAL    set by the fakes themselves when one fake runs
#                       another internally: no logging, no injection

FB_NAME=${0##*/}
FB_CMDLINE=$FB_NAME
if [ "$FB_NAME" = lib.sh ]; then
	echo "lib.sh is sourced by the fakebsd commands; it does nothing on its own" >&2
	exit 1
fi

# fb_err MSG... : print to stderr
fb_err() {
	printf '%s\n' "$*" >&2
}

# fb_die MSG... : print to stderr and exit 1
fb_die() {
	printf '%s\n' "$*" >&2
	exit 1
}

# fb_need_root : the command cannot work without FAKEBSD_ROOT
fb_need_root() {
	if [ -z "${FAKEBSD_ROOT:-}" ]; then
		printf 'fakebsd: %s: FAKEBSD_ROOT is not set (point it at the simulated root directory)\n' "$FB_NAME" >&2
		exit 70
	fi
	case $FAKEBSD_ROOT in
	/*) ;;
	*) FAKEBSD_ROOT=$(CDPATH='' cd -- "$FAKEBSD_ROOT" 2>/dev/null && pwd) ||
		fb_die "fakebsd: $FB_NAME: FAKEBSD_ROOT does not exist"
	esac
	FB_ROOT=${FAKEBSD_ROOT%/}
	FB_STATE=$FB_ROOT/var/fakebsd
	mkdir -p "$FB_STATE" "$FB_ROOT/var/log" ||
		fb_die "fakebsd: $FB_NAME: cannot create state under $FB_ROOT"
}

# fb_join ARGS... : join arguments with single spaces into FB_JOINED,
# newlines replaced by the two characters \n so one call is one log line.
fb_join() {
	FB_JOINED=
	for fb_j_a in "$@"; do
		case $fb_j_a in
		*'
'*) fb_j_a=$(printf '%s' "$fb_j_a" | awk 'BEGIN{ORS=""} NR>1{print "\\n"} {print}') ;;
		esac
		if [ -z "$FB_JOINED" ]; then
			FB_JOINED=$fb_j_a
		else
			FB_JOINED="$FB_JOINED $fb_j_a"
		fi
	done
}

# fb_log CLASS : append "CLASS <cmdline>" to the call log
fb_log() {
	[ -n "${FB_ROOT:-}" ] || return 0
	printf '%s %s\n' "$1" "$FB_CMDLINE" >>"$FB_ROOT/var/log/fakebsd.log"
}

# fb_lock NAME : wait for the state lock NAME (a short critical section; the
# caller ends it with fb_unlock NAME). flock(1) waits in the kernel and the
# lock goes away with the process; without flock, a lock directory is polled,
# and one still held after 30 s of waiting is taken as left by a killed process.
fb_lock() {
	if command -v flock >/dev/null 2>&1; then
		exec 8>>"$FB_STATE/.lock.$1"
		flock 8
		return 0
	fi
	fb_lock_d=$FB_STATE/.lock.$1.d
	fb_lock_n=0
	while ! mkdir "$fb_lock_d" 2>/dev/null; do
		fb_lock_n=$((fb_lock_n + 1))
		if [ "$fb_lock_n" -gt 600 ]; then
			rmdir "$fb_lock_d" 2>/dev/null
			fb_lock_n=0
		fi
		sleep 0.05 2>/dev/null || sleep 1
	done
}

# fb_unlock NAME
fb_unlock() {
	if command -v flock >/dev/null 2>&1; then
		flock -u 8
		exec 8>&-
		return 0
	fi
	rmdir "$FB_STATE/.lock.$1.d" 2>/dev/null || :
}

# fb_hold NAME [shared] : hold the state lock NAME until this process exits,
# exclusively or shared with other holders that ask for it shared.
fb_hold() {
	if command -v flock >/dev/null 2>&1; then
		exec 9>>"$FB_STATE/.lock.$1"
		if [ "${2:-}" = shared ]; then
			flock -s 9
		else
			flock 9
		fi
		return 0
	fi
	fb_lock "$1"
	# shellcheck disable=SC2064 # the name is fixed now
	trap "fb_unlock '$1'" EXIT
}

# fb_delay SECONDS : sleep that long (FAKEBSD_DELAY_* variables), so a run can
# stand in for a slow real command; not for internal calls.
fb_delay() {
	[ -n "${FAKEBSD_INTERNAL:-}" ] && return 0
	case ${1:-} in
	'' | 0) return 0 ;;
	*[!0-9.]*) fb_die "fakebsd: $FB_NAME: the delay must be a number of seconds, not '$1'" ;;
	esac
	sleep "$1"
}

# fb_begin MUT|RO ARGS... : log the call, apply FAKEBSD_KILL_AFTER and
# FAKEBSD_FAIL.  Must be called before the command changes anything.
fb_begin() {
	fb_b_class=$1
	shift
	fb_join "$FB_NAME" "$@"
	FB_CMDLINE=$FB_JOINED
	[ -n "${FAKEBSD_INTERNAL:-}" ] && return 0
	if [ -z "${FAKEBSD_ROOT:-}" ]; then
		# only sysrc -f FILE gets here; nothing to log into
		fb_b_root=
	else
		fb_need_root
		fb_b_root=$FB_ROOT
	fi

	if [ "$fb_b_class" = MUT ] && [ -n "${FAKEBSD_KILL_AFTER:-}" ] && [ -n "$fb_b_root" ]; then
		fb_b_count=0
		[ -f "$FB_STATE/mutcount" ] && fb_b_count=$(cat "$FB_STATE/mutcount")
		if [ "$fb_b_count" -ge "$FAKEBSD_KILL_AFTER" ]; then
			fb_log KILL
			kill -9 "$PPID" 2>/dev/null
			exit 137
		fi
	fi

	if [ -n "${FAKEBSD_FAIL:-}" ]; then
		fb_b_oldifs=$IFS
		IFS='
'
		for fb_b_pat in $FAKEBSD_FAIL; do
			[ -n "$fb_b_pat" ] || continue
			# shellcheck disable=SC2254
			case $FB_CMDLINE in
			$fb_b_pat)
				IFS=$fb_b_oldifs
				fb_log FAIL
				printf 'fakebsd: injected failure: %s\n' "$FB_CMDLINE" >&2
				exit 1
				;;
			esac
		done
		IFS=$fb_b_oldifs
	fi

	if [ -n "${FAKEBSD_HANG:-}" ] && [ -n "$fb_b_root" ]; then
		# shellcheck disable=SC2254
		case $FB_CMDLINE in
		$FAKEBSD_HANG)
			fb_log HANG
			mkdir -p "$FB_STATE"
			echo $$ >"$FB_STATE/hung.pid"
			# a child that keeps the caller's pipes open, as a stuck tool's helpers do
			sleep 3600 &
			echo $! >"$FB_STATE/hung-child.pid"
			wait
			exit 1
			;;
		esac
	fi

	fb_log "$fb_b_class"
	if [ "$fb_b_class" = MUT ] && [ -n "$fb_b_root" ]; then
		fb_lock counters
		fb_b_count=0
		[ -f "$FB_STATE/mutcount" ] && fb_b_count=$(cat "$FB_STATE/mutcount")
		echo $((fb_b_count + 1)) >"$FB_STATE/mutcount"
		fb_unlock counters
	fi
	return 0
}

# fb_internal CMD ARGS... : run another fake without logging/injection
fb_internal() {
	fb_i_cmd=$1
	shift
	FAKEBSD_INTERNAL=1 "$FB_DIR/$fb_i_cmd" "$@"
}

# fb_next_id COUNTERNAME START : print and bump a counter in state
fb_next_id() {
	fb_lock counters
	fb_n_v=$2
	[ -f "$FB_STATE/counter.$1" ] && fb_n_v=$(cat "$FB_STATE/counter.$1")
	echo $((fb_n_v + 1)) >"$FB_STATE/counter.$1"
	fb_unlock counters
	echo "$fb_n_v"
}

# fb_new_pid DESCRIPTION : allocate a fake pid, mark it alive, print it
fb_new_pid() {
	fb_p=$(fb_next_id pid 41001)
	mkdir -p "$FB_STATE/proc"
	printf '%s\n' "$1" >"$FB_STATE/proc/$fb_p"
	echo "$fb_p"
}

# fb_pid_alive PID
fb_pid_alive() {
	case $1 in
	'' | *[!0-9]*) return 1 ;;
	esac
	[ -f "$FB_STATE/proc/$1" ]
}

fb_pid_kill() {
	case $1 in
	'' | *[!0-9]*) return 1 ;;
	esac
	rm -f "$FB_STATE/proc/$1"
}

# fb_valid_ipv4 ADDR : dotted quad with every octet 0..255
fb_valid_ipv4() {
	printf '%s\n' "$1" | grep -Eq '^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$' || return 1
	fb_v_old=$IFS
	IFS=.
	# shellcheck disable=SC2086
	set -- $1
	IFS=$fb_v_old
	for fb_v_o in "$@"; do
		[ "$fb_v_o" -le 255 ] || return 1
	done
	return 0
}

# fb_ip2int A.B.C.D
fb_ip2int() {
	fb_v_old=$IFS
	IFS=.
	# shellcheck disable=SC2086
	set -- $1
	IFS=$fb_v_old
	echo $((($1 << 24) + ($2 << 16) + ($3 << 8) + $4))
}

fb_int2ip() {
	echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"
}

# fb_prefix2mask LEN : integer mask
fb_prefix2mask() {
	if [ "$1" -eq 0 ]; then
		echo 0
	else
		echo $(((0xffffffff << (32 - $1)) & 0xffffffff))
	fi
}

# fb_mask2prefix DOTTED-OR-HEX-MASK
fb_mask2prefix() {
	case $1 in
	0x* | 0X*) fb_m_i=$(($1)) ;;
	*) fb_m_i=$(fb_ip2int "$1") ;;
	esac
	fb_m_n=0
	while [ "$fb_m_i" -ne 0 ] && [ $((fb_m_i & 0x80000000)) -ne 0 ]; do
		fb_m_n=$((fb_m_n + 1))
		fb_m_i=$(((fb_m_i << 1) & 0xffffffff))
	done
	echo "$fb_m_n"
}

# fb_quote_sq STRING : single-quote for sh
fb_quote_sq() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}
