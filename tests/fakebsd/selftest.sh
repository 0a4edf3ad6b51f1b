#!/bin/sh
# shellcheck disable=SC2016 # literal ${ARG} / $macro text in test inputs
# Self-test of the fakebsd userland.  Exits non-zero if any check fails.
# Usage: sh tests/fakebsd/selftest.sh [-v]
FAKE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
VERBOSE=
[ "${1:-}" = -v ] && VERBOSE=1

PATH=$FAKE:$PATH
export PATH
unset FAKEBSD_FAIL FAKEBSD_KILL_AFTER FAKEBSD_INTERNAL FAKEBSD_PF_STRICT_TABLES
FAKEBSD_IFACES="em0 igb0"
export FAKEBSD_IFACES

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fakebsd-selftest.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT INT TERM
FAKEBSD_ROOT=$WORK/root
export FAKEBSD_ROOT
mkdir -p "$FAKEBSD_ROOT"
OUT=$WORK/out
ERR=$WORK/err

pass=0
fail=0
ok() {
	pass=$((pass + 1))
	[ -n "$VERBOSE" ] && echo "ok   $1"
	return 0
}
ko() {
	fail=$((fail + 1))
	echo "FAIL $1"
	if [ -s "$OUT" ]; then sed 's/^/     stdout| /' "$OUT"; fi
	if [ -s "$ERR" ]; then sed 's/^/     stderr| /' "$ERR"; fi
	return 0
}
# run CMD...: capture stdout/stderr/status
run() {
	"$@" >"$OUT" 2>"$ERR"
	rc=$?
}
# t_rc DESC WANT CMD... : exit status must be WANT
t_rc() {
	d=$1 want=$2
	shift 2
	run "$@"
	if [ "$rc" -eq "$want" ]; then ok "$d"; else ko "$d (exit $rc, wanted $want)"; fi
}
# t_out DESC WANT_RC FIXED_STRING CMD... : exit status and stdout substring
t_out() {
	d=$1 want=$2 s=$3
	shift 3
	run "$@"
	if [ "$rc" -eq "$want" ] && grep -qF -- "$s" "$OUT"; then ok "$d"; else ko "$d (exit $rc, wanted $want and stdout containing: $s)"; fi
}
# t_err DESC WANT_RC FIXED_STRING CMD... : exit status and stderr substring
t_err() {
	d=$1 want=$2 s=$3
	shift 3
	run "$@"
	if [ "$rc" -eq "$want" ] && grep -qF -- "$s" "$ERR"; then ok "$d"; else ko "$d (exit $rc, wanted $want and stderr containing: $s)"; fi
}
# t_file DESC FILE FIXED_STRING : file contains line/substring
t_file() {
	: >"$OUT"
	: >"$ERR"
	if [ -f "$2" ] && grep -qF -- "$3" "$2"; then ok "$1"; else
		[ -f "$2" ] && cp "$2" "$OUT"
		ko "$1 ($2 should contain: $3)"
	fi
}
t_nofile() {
	: >"$OUT"
	: >"$ERR"
	if [ -e "$2" ]; then ko "$1 ($2 should not exist)"; else ok "$1"; fi
}
t_eq() { # DESC GOT WANT
	: >"$ERR"
	printf '%s\n' "$2" >"$OUT"
	if [ "$2" = "$3" ]; then ok "$1"; else ko "$1 (got '$2', wanted '$3')"; fi
}

# ---- shellcheck -------------------------------------------------------------
if command -v shellcheck >/dev/null 2>&1; then
	for f in "$FAKE"/*; do
		[ -f "$f" ] || continue
		head -n 1 "$f" | grep -q '^#!/bin/sh' || case $f in *.sh) ;; *) continue ;; esac
		t_rc "shellcheck ${f##*/}" 0 shellcheck -s sh "$f"
	done
else
	echo "note: shellcheck not found, lint skipped"
fi
for f in bastille devfs ifconfig jls kldload kldstat pfctl ps pw rctl service sysctl sysrc tcpdump vm zfs; do
	if [ -x "$FAKE/$f" ]; then ok "$f is executable"; else ko "$f is executable"; fi
done

# ---- common rules -------------------------------------------------------------
t_err "FAKEBSD_ROOT required" 70 "FAKEBSD_ROOT is not set" env -u FAKEBSD_ROOT ifconfig -l
LOG=$FAKEBSD_ROOT/var/log/fakebsd.log

# ---- sysrc --------------------------------------------------------------------------
RC=$FAKEBSD_ROOT/etc/rc.conf
t_out "sysrc set new" 0 "gateway_enable:  -> YES" sysrc gateway_enable=YES
t_out "sysrc replace" 0 "gateway_enable: YES -> NO" sysrc gateway_enable=NO
t_file "sysrc writes quoted" "$RC" 'gateway_enable="NO"'
t_eq "sysrc replaced in place" "$(grep -c gateway_enable "$RC")" 1
t_out "sysrc -n" 0 "NO" sysrc -n gateway_enable
t_out "sysrc name" 0 "gateway_enable: NO" sysrc gateway_enable
t_err "sysrc unknown" 1 "sysrc: unknown variable 'nope'" sysrc -n nope
t_rc "sysrc -c same" 0 sysrc -c gateway_enable=NO
t_rc "sysrc -c differs" 1 sysrc -c gateway_enable=YES
t_rc "sysrc -c unset" 1 sysrc -c nope=x
t_eq "sysrc -c silent" "$(sysrc -c gateway_enable=YES 2>&1)" ""
sysrc cloned_interfaces+=bridge0 >/dev/null
sysrc cloned_interfaces+="bridge1 bridge0" >/dev/null
t_out "sysrc += skips present words" 0 "bridge0 bridge1" sysrc -n cloned_interfaces
sysrc cloned_interfaces-=bridge0 >/dev/null
t_out "sysrc -=" 0 "bridge1" sysrc -n cloned_interfaces
t_out "sysrc multiple" 0 "b:  -> 2" sysrc a=1 b=2
t_out "sysrc -a sorted" 0 "a: 1" sysrc -a
t_eq "sysrc -a first line" "$(sysrc -a | head -n 1)" "a: 1"
t_rc "sysrc -x" 0 sysrc -x a
t_err "sysrc -x gone" 1 "unknown variable 'a'" sysrc -n a
printf 'x="1" # keep\n' >"$WORK/other.conf"
t_out "sysrc -f without FAKEBSD_ROOT" 0 "x: 1 -> 2" env -u FAKEBSD_ROOT sysrc -f "$WORK/other.conf" x=2
t_file "sysrc keeps trailing comment" "$WORK/other.conf" 'x="2" # keep'
t_out "sysrc -f creates file" 0 "boot:  -> on" sysrc -f "$WORK/new.conf" boot=on
mkdir -p "$WORK/jroot/etc"
t_out "sysrc -R" 0 "sshd_enable:  -> YES" sysrc -R "$WORK/jroot" sshd_enable=YES
t_file "sysrc -R writes DIR/etc/rc.conf" "$WORK/jroot/etc/rc.conf" 'sshd_enable="YES"'
t_file "log MUT sysrc" "$LOG" "MUT sysrc gateway_enable=YES"
t_file "log RO sysrc -n" "$LOG" "RO sysrc -n gateway_enable"
t_file "log RO sysrc -c" "$LOG" "RO sysrc -c gateway_enable=NO"

# ---- ifconfig ---------------------------------------------------------------------------
t_out "bridge create" 0 "wardenbr0" ifconfig bridge create name wardenbr0 up
t_rc "alias add" 0 ifconfig wardenbr0 inet 10.0.1.1/24 alias
t_err "alias dup" 1 "ifconfig: ioctl (SIOCAIFADDR): File exists" ifconfig wardenbr0 inet 10.0.1.1/24 alias
t_out "show inet" 0 "	inet 10.0.1.1 netmask 0xffffff00 broadcast 10.0.1.255" ifconfig wardenbr0
t_out "show groups" 0 "	groups: bridge" ifconfig wardenbr0
t_out "show flags" 0 "wardenbr0: flags=" ifconfig wardenbr0
t_rc "second alias" 0 ifconfig wardenbr0 inet 10.0.1.2/24 alias
t_rc "-alias" 0 ifconfig wardenbr0 inet 10.0.1.2 -alias
t_err "-alias absent" 1 "SIOCDIFADDR" ifconfig wardenbr0 inet 10.0.1.2 -alias
t_err "no such interface" 1 "ifconfig: interface nope0 does not exist" ifconfig nope0
t_out "-g bridge" 0 "wardenbr0" ifconfig -g bridge
t_out "bridge create auto" 0 "bridge0" ifconfig bridge create
t_rc "destroy" 0 ifconfig bridge0 destroy
t_err "destroy twice" 1 "does not exist" ifconfig bridge0 destroy
t_file "log RO ifconfig show" "$LOG" "RO ifconfig wardenbr0"
t_file "log MUT ifconfig" "$LOG" "MUT ifconfig wardenbr0 inet 10.0.1.1/24 alias"

# ---- bastille -----------------------------------------------------------------------------
B=$FAKEBSD_ROOT/usr/local/bastille
# VNET jails run under ruleset 13, which exists once bastille setup wrote it and
# rc.d/devfs loaded it
t_err "create refused while ruleset 13 is not loaded" 1 "jail: atlas: devfs ruleset 13 is not loaded" bastille create -T -B -g 10.0.1.1 atlas 14.2-RELEASE 10.0.1.5/24 wardenbr0
t_nofile "the refused create left no jail" "$B/jails/atlas"
t_out "bastille setup vnet" 0 "Creating bastille_vnet devfs.rules" bastille setup vnet
t_file "setup wrote ruleset 13" "$FAKEBSD_ROOT/etc/devfs.rules" "[bastille_vnet=13]"
t_out "bastille setup leaves a file with bastille_vnet=13 alone" 0 "VNET has already been configured!" bastille setup vnet
t_rc "service devfs restart loads ruleset 13" 0 service devfs restart
t_out "bastille create" 0 "atlas: created" bastille create -T -B -g 10.0.1.1 atlas 14.2-RELEASE 10.0.1.5/24 wardenbr0
t_err "bastille create twice" 1 "[ERROR]: Jail already exists: atlas" bastille create -T -B -g 10.0.1.1 atlas 14.2-RELEASE 10.0.1.5/24 wardenbr0
t_err "bastille vnet name" 1 "VNET jail names may not contain (-|_) characters." bastille create -B bad-name 14.2-RELEASE 10.0.1.6/24 wardenbr0
t_err "bastille not a bridge" 1 "[ERROR]: Interface is not a bridge: nobr0" bastille create -B hermes 14.2-RELEASE 10.0.1.6/24 nobr0
t_err "bastille bad release" 1 "Unknown release: banana" bastille create -B hermes banana 10.0.1.6/24 wardenbr0
t_err "bastille bad ip" 1 "[ERROR]: Invalid IP: 10.0.1.300/24" bastille create -B hermes 14.2-RELEASE 10.0.1.300/24 wardenbr0
t_file "jail.conf vnet" "$B/jails/atlas/jail.conf" "  vnet;"
t_file "jail.conf vnet.interface" "$B/jails/atlas/jail.conf" "  vnet.interface = e0b_atlas;"
t_file "jail.conf devfs_ruleset" "$B/jails/atlas/jail.conf" "  devfs_ruleset = 13;"
t_file "jail.conf path" "$B/jails/atlas/jail.conf" "  path = $B/jails/atlas/root;"
t_file "jail.conf hostname" "$B/jails/atlas/jail.conf" "  host.hostname = atlas;"
t_file "jail rc.conf ip" "$B/jails/atlas/root/etc/rc.conf" 'ifconfig_vnet0="inet 10.0.1.5/24"'
t_file "jail rc.conf gw" "$B/jails/atlas/root/etc/rc.conf" 'defaultrouter="10.0.1.1"'
t_out "bridge member e0a_atlas" 0 "member: e0a_atlas" ifconfig wardenbr0
t_out "jls name" 0 "atlas" jls name
t_out "jls table" 0 "$B/jails/atlas/root" jls
t_out "jls -j path" 0 "$B/jails/atlas/root" jls -j atlas path
t_err "jls -j missing" 1 'jls: jail "zeus" not found' jls -j zeus
t_out "bastille list" 0 "atlas" bastille list
mkdir -p "$B/jails/halfjail/root"
t_out "create reuses a killed create's directory" 0 "halfjail: created" bastille create -T -B -g 10.0.1.1 halfjail 14.2-RELEASE 10.0.1.9/24 wardenbr0
t_file "reused directory has its jail.conf" "$B/jails/halfjail/jail.conf" "halfjail {"
t_rc "destroy the reused jail" 0 bastille destroy -a -y halfjail
t_out "config get" 0 "13" bastille config atlas get devfs_ruleset
t_rc "config set" 0 bastille config atlas set devfs_ruleset 14
t_out "config get after set" 0 "14" bastille config atlas get devfs_ruleset
t_file "config set in place" "$B/jails/atlas/jail.conf" "  devfs_ruleset = 14;"
t_out "config get unset" 0 "not set" bastille config atlas get allow.raw_sockets
t_file "log RO bastille config get" "$LOG" "RO bastille config atlas get devfs_ruleset"
t_out "bastille create long name" 0 "created" bastille create -B averyveryverylongname 14.2-RELEASE 10.0.1.7 wardenbr0
t_file "long name epair fallback" "$B/jails/averyveryverylongname/jail.conf" "vnet.interface = e0b_bastille1;"

# templates
T=$B/templates/warden/agent
mkdir -p "$T/files" "$T/usr/local/etc" "$FAKEBSD_ROOT/var/db/shared"
echo 'motd ${AGENT}' >"$T/files/motd"
echo 'name=${AGENT} ip=${JAIL_IP}' >"$T/usr/local/etc/agent.conf"
cat >"$T/Bastillefile" <<'EOF'
# warden agent template
ARG AGENT=default
ARG PORT="8080"
PKG curl \
    git
SYSRC ${AGENT}_enable=YES
SYSRC ${AGENT}_port=${PORT}
CP files/motd etc/motd
OVERLAY usr
RENDER /usr/local/etc/agent.conf
SERVICE ${AGENT} start
CMD echo hi > /tmp/never-run
MOUNT /var/db/shared var/db/shared nullfs ro 0 0
CONFIG set allow.raw_sockets 1
EOF
# service(8) in the jail needs the service's rc script
mkdir -p "$B/jails/atlas/root/usr/local/etc/rc.d"
printf '#!/bin/sh\n' >"$B/jails/atlas/root/usr/local/etc/rc.d/zeus"
chmod 755 "$B/jails/atlas/root/usr/local/etc/rc.d/zeus"
t_out "template applies" 0 "Template applied: warden/agent" bastille template atlas warden/agent --arg AGENT=zeus
J=$B/jails/atlas/root
t_file "template PKG" "$J/var/fakebsd/pkg.list" "curl"
t_file "template PKG continuation" "$J/var/fakebsd/pkg.list" "git"
t_file "template SYSRC with --arg" "$J/etc/rc.conf" 'zeus_enable="YES"'
t_file "template SYSRC default arg" "$J/etc/rc.conf" 'zeus_port="8080"'
t_file "template CP" "$J/etc/motd" 'motd ${AGENT}'
t_file "template OVERLAY+RENDER" "$J/usr/local/etc/agent.conf" "name=zeus ip=10.0.1.5"
t_file "template SERVICE recorded" "$J/var/fakebsd/service.log" "zeus start"
t_file "template CMD recorded" "$J/var/fakebsd/cmd.log" "echo hi > /tmp/never-run"
t_nofile "template CMD not executed" /tmp/never-run
t_file "template MOUNT" "$B/jails/atlas/fstab" "/var/db/shared $J/var/db/shared nullfs ro 0 0"
t_file "template CONFIG" "$B/jails/atlas/jail.conf" "allow.raw_sockets = 1;"
printf 'PKG vim\nCP files/missing etc/x\nPKG never\n' >"$T/Bastillefile"
t_err "failing hook exits 1 (template.sh error_exit)" 1 "[ERROR]: Failed to execute command: cp" bastille template atlas warden/agent
t_file "hook before failure ran" "$J/var/fakebsd/pkg.list" "vim"
if grep -qx never "$J/var/fakebsd/pkg.list"; then ko "hooks after failure skipped"; else ok "hooks after failure skipped"; fi
printf 'PKG tmux\n' >"$T/Bastillefile"
t_err "injected hook failure" 1 "[ERROR]: Failed to execute command: pkg" env FAKEBSD_FAIL='bastille pkg atlas tmux' bastille template atlas warden/agent
t_err "missing template" 1 "[ERROR]: warden/nope not found." bastille template atlas warden/nope
t_err "template on missing jail" 1 "[ERROR]: Jail not found: zeus" bastille template zeus warden/agent

# start/stop/destroy
t_out "bastille stop" 0 "atlas: removed" bastille stop atlas
t_eq "jls after stop" "$(jls name)" "averyveryverylongname"
t_err "template on stopped jail" 0 "Jail is not running." bastille template atlas warden/agent
t_err "start refused while ruleset 14 is not loaded" 1 "devfs ruleset 14 is not loaded" bastille start atlas
mkdir -p "$FAKEBSD_ROOT/etc"
printf '# GPU\n[gpu=14]\nadd include $devfsrules_jail_vnet\nadd path dri unhide\n' >"$FAKEBSD_ROOT/etc/devfs.rules"
t_rc "service devfs restart loads /etc/devfs.rules" 0 service devfs restart
t_out "ruleset 14 loaded" 0 "200 path dri unhide" devfs rule -s 14 show
t_out "bastille start" 0 "atlas: created" bastille start atlas
t_rc "pkg install postgresql17-server" 0 bastille pkg atlas install postgresql17-server
t_err "PostgreSQL refused without sysvshm" 1 "could not create shared memory segment: Function not implemented" bastille service atlas postgresql start
t_err "config set refuses an unknown property (config.sh validate_property)" 1 "[ERROR]: Unsupported property: sysvshmem" bastille config atlas set sysvshmem new
t_err "config needs 3 or 4 parameters" 1 "Usage: bastille config" bastille config atlas set
t_rc "config set sysvshm new" 0 bastille config atlas set sysvshm new
t_err "sysvshm takes effect at restart only" 1 "Function not implemented" bastille cmd atlas service postgresql initdb
t_out "restart" 0 "atlas: created" bastille restart atlas
t_rc "PostgreSQL starts with sysvshm=new" 0 bastille service atlas postgresql start
t_err "start on a running service refuses (rc.subr)" 1 "postgresql already running? (pid=" bastille service atlas postgresql start
t_err "cmd service start refuses too" 1 "postgresql already running?" bastille cmd atlas service postgresql start
t_err "bastille cmd exits 1 for any failure (cmd.sh)" 1 "[ERROR]: Command failed on 1 jails." bastille cmd atlas service postgresql start
t_rc "restart works on a running service" 0 bastille service atlas postgresql restart
t_rc "stop" 0 bastille service atlas postgresql stop
t_err "stop on a stopped service refuses" 1 "postgresql not running? (check /var/run/postgresql.pid)." bastille service atlas postgresql stop
t_err "reload on a stopped service refuses" 1 "postgresql not running?" bastille service atlas postgresql reload
t_rc "restart works on a stopped service" 0 bastille service atlas postgresql restart
t_err "bastille service takes exactly SERVICE ACTION" 1 "Usage: bastille service [option(s)] TARGET SERVICE ARGS" bastille service atlas postgresql
# tar, stat and mkdir in a jail act on its root, links resolved as the jail sees them
JR=$B/jails/atlas/root
mkdir -p "$JR/home/git/notes.git" "$WORK/hostdir/x"
echo "ref: refs/heads/main" >"$JR/home/git/notes.git/HEAD"
t_out "stat -f %HT in a jail" 0 "Directory" bastille cmd atlas stat -f %HT /home/git
t_err "stat of a missing path" 1 "stat: /usr/local/www/atlas: stat: No such file or directory" bastille cmd atlas stat -f %HT /usr/local/www/atlas
ln -s "$WORK/hostdir" "$JR/hostlink"
t_out "stat does not follow the last link" 0 "Symbolic Link" bastille cmd atlas stat -f %HT /hostlink
t_err "an absolute link leads into the jail, not the host" 1 "No such file or directory" bastille cmd atlas stat -f %HT /hostlink/x
run bastille cmd atlas tar -cf - -C /home/git .
tail -c +11 "$OUT" >"$WORK/git.tar"
t_eq "tar -c streams after bastille's header" "$(head -c 10 "$OUT" | od -An -c | tr -s ' ')" " \n [ a t l a s ] : \n"
t_err "tar -C a missing directory" 1 "tar: could not chdir to '/nope'" bastille cmd atlas tar -cf - -C /nope .
t_rc "mkdir -p in a jail" 0 bastille cmd atlas mkdir -p /usr/local/www/atlas
t_rc "tar -x from standard input" 0 sh -c 'bastille cmd atlas tar -xpf - -C /usr/local/www/atlas <"$1"' sh "$WORK/git.tar"
t_file "tar -x wrote into the jail" "$JR/usr/local/www/atlas/notes.git/HEAD" "ref: refs/heads/main"
t_err "tar -f FILE is not simulated" 1 "only -f -" bastille cmd atlas tar -cf /tmp/x.tar -C /home/git .
# bsdtar -x never writes through a link (libarchive's check_symlinks)
mkdir -p "$WORK/src/etc/app" "$WORK/outside"
echo conf >"$WORK/src/etc/app/app.conf"
echo top >"$WORK/src/top.conf"
(cd "$WORK/src" && tar -cf "$WORK/app.tar" etc/app/app.conf top.conf)
mkdir -p "$JR/etc"
ln -s "$WORK/outside" "$JR/etc/app"
ln -s "$WORK/outside/top.conf" "$JR/top.conf"
t_err "tar -x refuses to extract through a link" 1 "tar: etc/app/app.conf: Cannot extract through symlink etc/app" sh -c 'bastille cmd atlas tar -x -p -f - -C / <"$1"' sh "$WORK/app.tar"
t_nofile "nothing written where the link points" "$WORK/outside/app.conf"
t_nofile "nor through the last component's link" "$WORK/outside/top.conf"
t_file "a link at the last component is replaced by the file" "$JR/top.conf" "top"
if [ -L "$JR/top.conf" ]; then ko "top.conf is a file now"; else ok "top.conf is a file now"; fi
(cd "$WORK/src" && tar -cf "$WORK/appdir.tar" etc)
t_rc "a directory entry replaces the link, then its files follow" 0 sh -c 'bastille cmd atlas tar -x -p -f - -C / <"$1"' sh "$WORK/appdir.tar"
t_file "the file is in the jail's own directory" "$JR/etc/app/app.conf" "conf"
t_nofile "and still nothing outside" "$WORK/outside/app.conf"
t_rc "rm -f in a jail" 0 bastille cmd atlas rm -f /etc/app/app.conf
t_nofile "rm removed the jail's file" "$JR/etc/app/app.conf"
t_rc "rm -f of a missing file" 0 bastille cmd atlas rm -f /etc/app/app.conf
t_err "rm of a missing file" 1 "rm: /etc/app/app.conf: No such file or directory" bastille cmd atlas rm /etc/app/app.conf
t_err "rm of a directory" 1 "rm: /etc/app: is a directory" bastille cmd atlas rm -f /etc/app
echo keep >"$WORK/outside/keep"
ln -s "$WORK/outside/keep" "$JR/etc/keeplink"
t_rc "rm of a link" 0 bastille cmd atlas rm -f /etc/keeplink
t_file "removes the link, not its target" "$WORK/outside/keep" "keep"
# bastille sysrc runs in the jail: a link in its root resolves inside it, never on the host
mkdir -p "$FAKEBSD_ROOT/etc/hostside"
echo 'root_only="host"' >"$FAKEBSD_ROOT/etc/hostside/x.conf"
mkdir -p "$JR/etc/hostside"
ln -s /etc/hostside/x.conf "$JR/etc/linked.conf"
t_rc "bastille sysrc -f through a link" 0 bastille sysrc atlas -f /etc/linked.conf spoof=1
t_eq "the host's file is untouched" "$(cat "$FAKEBSD_ROOT/etc/hostside/x.conf")" 'root_only="host"'
t_file "the jail's own target got it" "$JR/etc/hostside/x.conf" 'spoof="1"'
rm -f "$JR/etc/linked.conf"
t_rc "pkg install llama-cpp" 0 bastille pkg atlas install llama-cpp
t_out "the llama-cpp package brings no rc script" 1 "llama-server does not exist in /etc/rc.d" bastille service atlas llama-server start
t_out "an unknown service does not start" 1 "nosuch does not exist in /etc/rc.d" bastille service atlas nosuch start
# warden_llama's start_precmd: the model must be a file in the jail (through its mounts)
mkdir -p "$JR/usr/local/etc/rc.d" "$WORK/models"
printf '#!/bin/sh\n' >"$JR/usr/local/etc/rc.d/warden_llama"
chmod 755 "$JR/usr/local/etc/rc.d/warden_llama"
t_rc "sysrc the model" 0 bastille sysrc atlas warden_llama_model=/var/db/llama/models/m.gguf
t_err "warden_llama refuses to start without llama-server" 1 "/usr/local/bin/llama-server is not installed: the llama-cpp package has it only when built with the EXAMPLES option" bastille service atlas warden_llama restart
mkdir -p "$JR/usr/local/bin" && printf '#!/bin/sh\n' >"$JR/usr/local/bin/llama-server" && chmod 755 "$JR/usr/local/bin/llama-server"
t_rc "mount the models" 0 bastille mount atlas "$WORK/models" /var/db/llama/models nullfs ro 0 0
t_err "warden_llama refuses to start without its model" 1 "warden_llama_model /var/db/llama/models/m.gguf is not a file" bastille service atlas warden_llama restart
echo GGUF >"$WORK/models/m.gguf"
t_rc "warden_llama starts with the model on the host" 0 bastille service atlas warden_llama restart
t_err "destroy running without -a" 0 "Use [-a|--auto] to auto-stop the jail." bastille destroy -y atlas
t_file "jail still there" "$B/jails/atlas/jail.conf" "atlas {"
t_err "destroy without -y on closed stdin" 0 "cancelled" bastille destroy -a atlas </dev/null
t_file "jail still there after cancel" "$B/jails/atlas/jail.conf" "atlas {"
t_out "destroy -a -y" 0 "Deleting Jail: atlas." bastille destroy -a -y atlas
t_nofile "jail dir removed" "$B/jails/atlas"
t_eq "jls after destroy" "$(jls name)" "averyveryverylongname"
t_err "bastille -V needs a non-bridge" 1 "[ERROR]: Interface is a bridge: wardenbr0" bastille create -V hermes 14.2-RELEASE 10.0.2.5/24 wardenbr0
t_out "bastille -V on igb0" 0 "hermes: created" bastille create -V hermes 14.2-RELEASE 10.0.2.5/24 igb0
t_out "jib bridge" 0 "member: igb0" ifconfig igb0bridge
t_out "jib bridge has the jail" 0 "member: e0a_hermes" ifconfig igb0bridge

# ---- pfctl ---------------------------------------------------------------------------------
cat >"$WORK/anchor.conf" <<'EOF'
table <atlas_ok> persist { 1.1.1.1, 9.9.9.9 }
pass out quick proto tcp from 10.0.1.5 to <atlas_ok> port 443
EOF
cat >"$WORK/pf.conf" <<EOF
# warden
ext_if = "em0"
jail_net = "10.0.1.0/24"
table <agents> persist { 10.0.1.5 }
set skip on lo0
scrub in all
nat on \$ext_if from \$jail_net to any -> (\$ext_if)
rdr-anchor "rdr/*"
block in all
pass out quick on \$ext_if keep state
pass in on wardenbr0 from <agents> to any \\
    port { 80, 443 }
anchor "warden/*"
load anchor "warden/atlas" from "$WORK/anchor.conf"
EOF
# pf.ko is not loaded on a fresh host: only -n works without /dev/pf
t_rc "pfctl -nf without pf.ko" 0 pfctl -nf "$WORK/pf.conf"
t_err "pfctl -f without pf.ko" 1 "pfctl: /dev/pf: No such file or directory" pfctl -f "$WORK/pf.conf"
t_err "pfctl -s info without pf.ko" 1 "pfctl: /dev/pf: No such file or directory" pfctl -s info
t_err "kldstat: pf not loaded" 1 "kldstat: can't find module pf" kldstat -m pf
t_rc "kldload pf" 0 kldload pf
t_err "kldload pf twice" 1 "kldload: can't load pf: module already loaded or in kernel" kldload pf
t_rc "kldload -n pf when loaded" 0 kldload -n pf
t_rc "kldstat -q -m pf" 0 kldstat -q -m pf
t_err "kldload an unknown module" 1 "kldload: can't load nosuch: No such file or directory" kldload nosuch
t_file "log MUT kldload" "$LOG" "MUT kldload pf"
t_out "pf loaded, disabled" 0 "Status: Disabled" pfctl -s info
t_rc "pfctl -nf good" 0 pfctl -nf "$WORK/pf.conf"
t_eq "pfctl -nf silent" "$(pfctl -nf "$WORK/pf.conf" 2>&1)" ""
t_file "log RO pfctl -nf" "$LOG" "RO pfctl -nf $WORK/pf.conf"
printf 'pass in all\nnat on em0 from any to any -> (em0)\n' >"$WORK/order.conf"
t_err "pfctl order" 1 "$WORK/order.conf:2: Rules must be in order: options, ethernet, normalization, queueing, translation, filtering" pfctl -nf "$WORK/order.conf"
t_err "pfctl not loaded" 1 "pfctl: Syntax error in config file: pf rules not loaded" pfctl -nf "$WORK/order.conf"
printf 'set skip on lo0\npass in on $int_if all\n' >"$WORK/macro.conf"
t_err "pfctl undefined macro" 1 "$WORK/macro.conf:2: macro 'int_if' not defined" pfctl -nf "$WORK/macro.conf"
printf 'pass out on em0 from 10.0.1.0/24 to any nat-to (em0)\n' >"$WORK/obsd.conf"
t_err "pfctl nat-to" 1 "$WORK/obsd.conf:1: syntax error" pfctl -nf "$WORK/obsd.conf"
printf 'pass in all\nallow in all\n' >"$WORK/kw.conf"
t_err "pfctl unknown keyword" 1 "$WORK/kw.conf:2: syntax error" pfctl -nf "$WORK/kw.conf"
printf 'include "%s/none.conf"\n' "$WORK" >"$WORK/inc.conf"
t_err "pfctl include missing" 1 "failed to include file" pfctl -nf "$WORK/inc.conf"
printf 'load anchor "x" from "%s/none.conf"\n' "$WORK" >"$WORK/la.conf"
t_err "pfctl load anchor missing" 1 "none.conf: No such file or directory" pfctl -nf "$WORK/la.conf"
t_err "pfctl missing file" 1 "cannot open the main config file" pfctl -nf "$WORK/nothere.conf"
printf 'pass from <undeclared> to any\n' >"$WORK/tbl.conf"
t_rc "pfctl undeclared table ok (like pf)" 0 pfctl -nf "$WORK/tbl.conf"
t_err "pfctl strict tables" 1 "table <undeclared> is not defined" env FAKEBSD_PF_STRICT_TABLES=1 pfctl -nf "$WORK/tbl.conf"
t_rc "pfctl -f" 0 pfctl -f "$WORK/pf.conf"
t_out "pfctl -sr" 0 "pass in on wardenbr0 from <agents> to any port { 80, 443 }" pfctl -sr
t_out "pfctl -sn" 0 "nat on em0 from 10.0.1.0/24 to any -> (em0)" pfctl -sn
t_out "pfctl anchor -sr" 0 "pass out quick proto tcp from 10.0.1.5 to <atlas_ok> port 443" pfctl -a warden/atlas -sr
t_out "pfctl anchor table" 0 "   9.9.9.9" pfctl -a warden/atlas -t atlas_ok -T show
t_out "pfctl main table" 0 "   10.0.1.5" pfctl -t agents -T show
t_rc "pfctl -a -f" 0 pfctl -a warden/hermes -f "$WORK/anchor.conf"
mkdir -p "$FAKEBSD_ROOT/etc"
cp "$WORK/anchor.conf" "$FAKEBSD_ROOT/etc/pf.anchor.conf"
printf 'anchor "sim"\nload anchor "sim" from "/etc/pf.anchor.conf"\n' >"$WORK/sim.conf"
t_rc "pfctl paths in pf.conf are inside FAKEBSD_ROOT" 0 pfctl -nf "$WORK/sim.conf"
t_out "pfctl -sA" 0 "  warden" pfctl -sA
t_err "pfctl -T add" 0 "1/1 addresses added." pfctl -t agents -T add 10.0.1.6
t_out "pfctl -T show added" 0 "10.0.1.6" pfctl -t agents -T show
t_err "pfctl -e" 0 "pf enabled" pfctl -e
t_err "pfctl -e twice" 1 "pfctl: pf already enabled" pfctl -e
t_out "pfctl -s info" 0 "Status: Enabled" pfctl -s info
t_err "pfctl -d" 0 "pf disabled" pfctl -d
t_err "pfctl -d twice" 1 "pfctl: pf not enabled" pfctl -d
t_file "log MUT pfctl -f" "$LOG" "MUT pfctl -f $WORK/pf.conf"

# ---- pw ----------------------------------------------------------------------------------------
t_rc "pw useradd" 0 pw useradd -n atlas -d /home/atlas -m -s /bin/sh -c "Atlas agent"
t_file "pw passwd line" "$FAKEBSD_ROOT/etc/passwd" "atlas:*:1001:1001:Atlas agent:/home/atlas:/bin/sh"
if [ -d "$FAKEBSD_ROOT/home/atlas" ]; then ok "pw -m home"; else ko "pw -m home"; fi
t_err "pw duplicate" 65 "pw: login name \`atlas' already exists" pw useradd atlas -m
t_out "pw usershow" 0 "atlas:*:1001:1001::0:0:Atlas agent:/home/atlas:/bin/sh" pw usershow atlas
t_err "pw usershow missing" 67 "pw: no such user \`nope'" pw usershow nope
t_rc "pw useradd 2" 0 pw useradd hermes -s sh
t_file "pw next uid" "$FAKEBSD_ROOT/etc/passwd" "hermes:*:1002:"
t_rc "pw userdel -r" 0 pw userdel -n atlas -r
t_nofile "pw userdel -r home" "$FAKEBSD_ROOT/home/atlas"
t_err "pw userdel missing" 67 "no such user" pw userdel -n atlas

# ---- service / ps -----------------------------------------------------------------------------------
mkdir -p "$FAKEBSD_ROOT/usr/local/etc/rc.d"
cat >"$FAKEBSD_ROOT/usr/local/etc/rc.d/atlas" <<'EOF'
#!/bin/sh
# PROVIDE: atlas
# REQUIRE: NETWORKING
. /etc/rc.subr
name=atlas
rcvar=atlas_enable
load_rc_config $name
: ${atlas_enable:="NO"}
pidfile="/var/run/warden/${name}.pid"
command="/usr/sbin/daemon"
command_args="-P ${pidfile} /usr/local/bin/atlas"
run_rc_command "$1"
EOF
chmod +x "$FAKEBSD_ROOT/usr/local/etc/rc.d/atlas"
t_out "service disabled start" 0 "Cannot 'start' atlas. Set atlas_enable to YES in /etc/rc.conf or use 'onestart' instead of 'start'." service atlas start
t_out "service status stopped" 1 "atlas is not running." service atlas status
sysrc atlas_enable=YES >/dev/null
t_out "service start" 0 "Starting atlas." service atlas start
t_out "service status running" 0 "atlas is running as pid" service atlas status
PID=$(cat "$FAKEBSD_ROOT/var/run/warden/atlas.pid" 2>/dev/null)
t_out "pidfile written" 0 "atlas is running as pid $PID." service atlas status
t_err "service start twice" 1 "atlas already running? (pid=$PID)." service atlas start
t_out "ps -p alive" 0 "$PID" ps -p "$PID,1" -o pid=
t_out "ps -o pid= -p" 0 "$PID" ps -o pid= -p "$PID"
t_out "service -e" 0 "$FAKEBSD_ROOT/usr/local/etc/rc.d/atlas" service -e
t_out "service stop" 0 "Stopping atlas." service atlas stop
t_rc "ps -p dead" 1 ps -p "$PID" -o pid=
t_nofile "pidfile removed" "$FAKEBSD_ROOT/var/run/warden/atlas.pid"
t_err "service stop again" 1 "atlas not running? (check /var/run/warden/atlas.pid)." service atlas stop
t_out "service missing" 1 "nope does not exist in /etc/rc.d or the local startup" service nope start
t_rc "service devfs restart" 0 service devfs restart
t_file "log service devfs" "$LOG" "MUT service devfs restart"
t_file "log RO service status" "$LOG" "RO service atlas status"

# ---- devfs ----------------------------------------------------------------------------------------------
t_rc "devfs add" 0 devfs rule -s 20 add path 'bpf*' unhide
t_out "devfs show" 0 "100 path bpf* unhide" devfs rule -s 20 show
t_file "log RO devfs show" "$LOG" "RO devfs rule -s 20 show"

# ---- sysctl -------------------------------------------------------------------------------------------
t_out "sysctl set" 0 "net.inet.ip.forwarding: 0 -> 1" sysctl net.inet.ip.forwarding=1
t_out "sysctl -n" 0 "1" sysctl -n net.inet.ip.forwarding
t_err "sysctl unknown" 1 "sysctl: unknown oid 'net.nope'" sysctl net.nope
t_err "sysctl read only" 1 "sysctl: oid 'security.jail.jailed' is read only" sysctl security.jail.jailed=1
t_file "log MUT sysctl" "$LOG" "MUT sysctl net.inet.ip.forwarding=1"

# ---- rctl and bastille limits/upgrade ------------------------------------------------------------------
t_err "rctl racct off" 1 "rctl: RACCT/RCTL present, but disabled; enable using kern.racct.enable=1 tunable" rctl
t_err "sysctl racct is a tunable" 1 "sysctl: oid 'kern.racct.enable' is read only" sysctl kern.racct.enable=1
t_err "bastille limits racct off" 1 "[ERROR]: Racct not enabled. Append 'kern.racct.enable=1' to /boot/loader.conf and reboot" bastille limits atlas add memoryuse 1G
mkdir -p "$FAKEBSD_ROOT/boot"
echo 'kern.racct.enable="1"' >"$FAKEBSD_ROOT/boot/loader.conf"
t_out "reboot takes loader.conf's tunable" 0 "fakebsd: reboot: kern.racct.enable: 0 -> 1 (loader.conf)" reboot
t_out "reboot: racct on" 0 "1" sysctl -n kern.racct.enable
t_file "log MUT reboot" "$LOG" "MUT reboot"
t_rc "rctl -a" 0 rctl -a jail:other:memoryuse:deny=2G/jail
t_out "rctl lists bytes, no /jail" 0 "jail:other:memoryuse:deny=2147483648" rctl
t_rc "rctl -a replaces a deny rule" 0 rctl -a jail:other:memoryuse:deny=1g
t_out "rctl shows the new amount" 0 "jail:other:memoryuse:deny=1073741824" rctl jail:other
t_out "rctl names users" 0 "user:www:pcpu:deny=50" sh -c 'rctl -a user:www:pcpu:deny=50 && rctl'
t_out "rctl -n keeps uids" 0 "user:80:pcpu:deny=50" rctl -n
t_err "rctl unknown user" 1 "rctl: malformed rule 'user:ghost:pcpu:deny=5': uknown user 'ghost'" rctl -a user:ghost:pcpu:deny=5
t_err "rctl deny cputime" 1 "rctl: failed to add rule 'jail:x:cputime:deny=5': Operation not supported" rctl -a jail:x:cputime:deny=5
t_err "rctl bad resource" 1 "rctl: failed to add rule 'jail:x:bogus:deny=5': Invalid argument" rctl -a jail:x:bogus:deny=5
t_rc "rctl -r" 0 rctl -r jail:other:memoryuse
t_err "rctl -r nothing" 1 "rctl: failed to remove rule 'jail:other:memoryuse': No such process" rctl -r jail:other:memoryuse
t_rc "bastille create thin" 0 bastille create -B -g 10.0.1.1 lim 14.2-RELEASE 10.0.1.9/24 wardenbr0
bastille stop lim >/dev/null 2>&1
t_err "bastille limits stopped jail" 0 "Jail is not running." bastille limits lim add memoryuse 1G
t_rc "bastille limits -a add" 0 bastille limits -a lim add memoryuse 1G
t_file "limits rctl.conf" "$B/jails/lim/rctl.conf" "jail:lim:memoryuse:deny=1G/jail"
t_out "limits in the kernel" 0 "jail:lim:memoryuse:deny=1073741824" rctl jail:lim
t_rc "bastille stop clears limits" 0 bastille stop lim
t_eq "no rule while stopped" "$(rctl jail:lim)" ""
t_rc "bastille start adds limits" 0 bastille start lim
t_out "rule back after start" 0 "jail:lim:memoryuse:deny=1073741824" rctl jail:lim
t_rc "bastille limits remove" 0 bastille limits lim remove memoryuse
t_eq "rule removed" "$(rctl jail:lim)" ""
t_eq "rctl.conf emptied" "$(cat "$B/jails/lim/rctl.conf")" ""
t_err "bastille upgrade unknown release" 1 "[ERROR]: Release not found: 15.1-RELEASE" bastille upgrade lim 15.1-RELEASE
bastille bootstrap 15.1-RELEASE >/dev/null
t_err "bastille upgrade running thin jail" 1 "Use [-a|--auto] to auto-stop the jail." bastille upgrade lim 15.1-RELEASE
t_out "bastille upgrade -a" 0 "Upgraded lim: 14.2-RELEASE -> 15.1-RELEASE" bastille upgrade -a lim 15.1-RELEASE
t_file "upgrade rewrites the fstab" "$B/jails/lim/fstab" "/releases/15.1-RELEASE $B/jails/lim/root/.bastille nullfs"
t_err "bastille upgrade same release" 1 "[ERROR]: Jail is already running release: 15.1-RELEASE" bastille upgrade -a lim 15.1-RELEASE

# ---- vm -------------------------------------------------------------------------------------------------
t_err "vm not enabled" 1 "\$vm_enable is not enabled in /etc/rc.conf!" vm list
sysrc vm_enable=YES >/dev/null
t_err "vm_dir missing" 1 "\$vm_dir has not been configured or is not a valid directory" vm list
sysrc vm_dir=/vm >/dev/null
mkdir -p "$FAKEBSD_ROOT/vm"
t_rc "vm init" 0 vm init
t_rc "vm switch create" 0 vm switch create public
t_rc "vm switch add" 0 vm switch add public em0
t_out "vm switch list" 0 "public" vm switch list
t_err "vm switch dup" 1 "switch public already exists" vm switch create public
cat >"$FAKEBSD_ROOT/vm/.templates/agent.conf" <<'EOF'
loader="bhyveload"
cpu=2
memory=2G
network0_type="virtio-net"
network0_switch="public"
disk0_type="virtio-blk"
disk0_name="disk0.img"
EOF
t_rc "vm create" 0 vm create -t agent -s 10G box1
t_file "vm conf copied" "$FAKEBSD_ROOT/vm/box1/box1.conf" 'memory=2G'
t_eq "vm disk size" "$(wc -c <"$FAKEBSD_ROOT/vm/box1/disk0.img" | tr -d ' ')" 10737418240
t_err "vm create dup" 1 "virtual machine already exists in" vm create -t agent box1
t_err "vm create no template" 1 "unable to find template" vm create -t nope box2
t_out "vm list stopped" 0 "Stopped" vm list
t_out "vm start" 0 "  * booting..." vm start box1
t_out "vm list running" 0 "Running (" vm list
t_err "vm destroy running" 1 "appears to be running" vm destroy -f box1
t_out "vm stop" 0 "Sending ACPI shutdown to box1" vm stop box1
t_rc "vm destroy" 0 vm destroy -f box1
t_nofile "vm dir removed" "$FAKEBSD_ROOT/vm/box1"

# ---- zfs and bastille on ZFS -----------------------------------------------------------------
export FAKEBSD_ZPOOLS=zroot
t_err "zfs create without parent" 1 "cannot create 'zroot/bastille/jails': parent does not exist" zfs create zroot/bastille/jails
t_rc "zfs create -o mountpoint" 0 zfs create -o mountpoint=/usr/local/bastille zroot/bastille
t_rc "zfs create inherits the mountpoint" 0 zfs create zroot/bastille/jails
t_err "zfs create twice" 1 "cannot create 'zroot/bastille/jails': dataset already exists" zfs create zroot/bastille/jails
t_err "zfs create unknown pool" 1 "cannot create 'tank/x': no such pool 'tank'" zfs create tank/x
mkdir -p "$FAKEBSD_ROOT/usr/local/etc/bastille"
printf 'bastille_zfs_enable="YES"\nbastille_zfs_zpool="zroot"\n' >"$FAKEBSD_ROOT/usr/local/etc/bastille/bastille.conf"
t_rc "bastille create on ZFS" 0 bastille create -B -g 10.0.1.1 zj 14.2-RELEASE 10.0.1.8/24 wardenbr0
t_out "bastille made the datasets" 0 "zroot/bastille/jails/zj/root	$B/jails/zj/root" sh -c "zfs list -H -o name,mountpoint | sed 's|	/|	$FAKEBSD_ROOT/|'"
echo before >"$B/jails/zj/root/etc/motd"
t_rc "zfs snapshot -r" 0 zfs snapshot -r zroot/bastille/jails/zj@one
t_out "snapshot of the child too" 0 "zroot/bastille/jails/zj/root@one" zfs list -H -t snapshot -o name
t_err "zfs snapshot twice" 1 "cannot create snapshot 'zroot/bastille/jails/zj@one': dataset already exists" zfs snapshot -r zroot/bastille/jails/zj@one
echo after >"$B/jails/zj/root/etc/motd"
t_rc "zfs snapshot second" 0 zfs snapshot -r zroot/bastille/jails/zj@two
t_err "rollback past a later snapshot" 1 "use '-r' to force deletion of the following snapshots and bookmarks:" zfs rollback zroot/bastille/jails/zj/root@one
t_rc "zfs rollback -r" 0 zfs rollback -r zroot/bastille/jails/zj/root@one
t_eq "rollback restored the file" "$(cat "$B/jails/zj/root/etc/motd")" "before"
t_eq "rollback -r destroyed the later snapshot" "$(zfs list -H -t snapshot -o name zroot/bastille/jails/zj/root@two 2>&1)" "cannot open 'zroot/bastille/jails/zj/root@two': dataset does not exist"
t_err "destroy missing snapshot" 1 "could not find any snapshots to destroy; check snapshot names." zfs destroy zroot/bastille/jails/zj@nope
# Several names in one call: all or nothing, one pool, one snapshot per filesystem.
t_rc "zfs create a second tree" 0 zfs create -p zroot/home/zh
t_err "one name that exists fails the call" 1 "cannot create snapshot 'zroot/bastille/jails/zj@one': dataset already exists" zfs snapshot -r zroot/home/zh@one zroot/bastille/jails/zj@one
t_eq "and nothing of it was created" "$(zfs list -H -t snapshot -o name | grep -c zh@one)" "0"
t_err "two snapshots of one filesystem" 1 "cannot create snapshots : multiple snapshots of same fs not allowed" zfs snapshot zroot/home/zh@a zroot/home/zh@b
t_rc "several trees at once" 0 zfs snapshot -r zroot/home/zh@three zroot/bastille/jails/zj@three zroot/home/zh@three
t_out "both trees have it" 0 "zroot/home/zh@three" zfs list -H -t snapshot -o name
t_out "the child of the other too" 0 "zroot/bastille/jails/zj/root@three" zfs list -H -t snapshot -o name
t_rc "zfs snapshot four" 0 zfs snapshot -r zroot/bastille/jails/zj@four
t_err "destroy takes one argument" 2 "too many arguments" zfs destroy zroot/home/zh@three zroot/bastille/jails/zj@four
t_rc "destroy a comma list, -r" 0 zfs destroy -r zroot/bastille/jails/zj@three,nope,four
t_eq "the listed ones went, the rest stayed" "$(zfs list -H -t snapshot -o name | grep zj | tr '\n' ' ')" "zroot/bastille/jails/zj@one zroot/bastille/jails/zj@two zroot/bastille/jails/zj/root@one "
t_rc "destroy a range" 0 zfs destroy zroot/home/zh@%three
t_eq "the range went" "$(zfs list -H -t snapshot -o name | grep -c zh@)" "0"
t_err "destroy with children" 1 "cannot destroy 'zroot/bastille/jails/zj': filesystem has children" zfs destroy zroot/bastille/jails/zj
t_rc "bastille destroy on ZFS" 0 bastille destroy -a -y zj
t_eq "the datasets went with it" "$(zfs list -H -o name | grep zj)" ""
rm -f "$FAKEBSD_ROOT/usr/local/etc/bastille/bastille.conf"
unset FAKEBSD_ZPOOLS

# ---- pflog and tcpdump --------------------------------------------------------------------------
t_err "tcpdump without a capture file" 1 "tcpdump: /var/log/pflog: No such file or directory" tcpdump -n -e -ttt -r /var/log/pflog
t_out "pflog needs pflog_enable" 0 "Cannot 'start' pflog. Set pflog_enable to YES" service pflog start
t_out "onestart starts pflogd" 0 "Starting pflogd." service pflog onestart
printf '1796306400.000001\t2\twarden\t17\t0(match)\tblock\tout\tem0\t1001\ttcp\t203.0.113.1\t5000\t192.0.2.9\t443\n' >>"$FAKEBSD_ROOT/var/log/pflog"
printf '1796306402.500000\t5\t-\t-\t0(match)\tblock\tin\tem0\t-\ticmp\t192.0.2.8\t-\t203.0.113.1\t-\n' >>"$FAKEBSD_ROOT/var/log/pflog"
t_out "tcpdump -e prints pflog's header" 0 "2026-12-03 14:00:00.000001 rule 2.warden.17/0(match) [uid 1001]: block out on em0: 203.0.113.1.5000 > 192.0.2.9.443: Flags [S]" tcpdump -n -e -tttt -r /var/log/pflog
t_out "main ruleset, icmp, -ttt deltas" 0 "00:00:02.499999 rule 5/0(match): block in on em0: 192.0.2.8 > 203.0.113.1: ICMP echo request" tcpdump -n -e -ttt -r /var/log/pflog
t_eq "without -e no header" "$(tcpdump -n -t -r /var/log/pflog 2>/dev/null | head -n 1)" "203.0.113.1.5000 > 192.0.2.9.443: Flags [S], seq 1, win 65535, length 0"
echo junk >"$FAKEBSD_ROOT/tmp-notpcap"
t_err "not a capture" 1 "tcpdump: unknown file format" tcpdump -n -r /tmp-notpcap
rm -f "$FAKEBSD_ROOT/tmp-notpcap" "$FAKEBSD_ROOT/var/log/pflog"
# ---- pkg and poudriere ---------------------------------------------------------------------------------
PR=$FAKEBSD_ROOT/srv/repo
PLOG=$FAKEBSD_ROOT/var/fakebsd/pkg.log
mkdir -p "$PR/.warden/repos"
printf 'upstream: {\n  url: "pkg+https://pkg.FreeBSD.org/${ABI}/quarterly",\n  signature_type: "fingerprints",\n  enabled: yes\n}\n' >"$PR/.warden/repos/upstream.conf"
pkgh() { pkg -R "$PR/.warden/repos" -o PKG_DBDIR="$PR/.warden/db" "$@"; }
t_err "pkg ABI_FILE unreadable" 1 "Unable to determine the ABI, none of the ABI_FILEs can be read." pkgh -o ABI_FILE=/nonexistent/uname fetch -y -d -o "$PR" nginx
t_err "pkg -o without =" 1 "Bad option, must be -o key=value" pkg -o ABI fetch nginx
t_out "bastille bootstrap writes the release's uname" 0 "Bootstrap successful." bastille bootstrap 15.0-RELEASE
UNAME=$B/releases/15.0-RELEASE/usr/bin/uname
t_err "pkg fetch of an unknown package fetches nothing" 1 "No packages matching 'nosuch' have been found in the repositories" pkgh -o ABI_FILE="$UNAME" fetch -y -d -o "$PR" nginx nosuch
t_nofile "nothing fetched" "$PR/All/nginx-1.26.2.pkg"
run sh -c 'echo n | pkg -R "$1/.warden/repos" -o PKG_DBDIR="$1/.warden/db" -o ABI_FILE="$2" fetch -d -o "$1" nginx' sh "$PR" "$UNAME"
if [ "$rc" -eq 1 ] && grep -q 'Proceed with fetching packages' "$OUT"; then ok "pkg fetch without -y asks, no is exit 1"; else ko "pkg fetch without -y asks (exit $rc)"; fi
t_rc "pkg fetch -d -o" 0 pkgh -o ABI_FILE="$UNAME" fetch -y -q -d -o "$PR" nginx pkg
t_file "pkg fetch -d brings the dependencies" "$PR/All/pcre2-10.44.pkg" "#fakepkg pcre2"
t_file "the catalogue from the network" "$PLOG" "net catalogue upstream 9437184 host"
t_file "a package from the network" "$PLOG" "net package nginx-1.26.2 1048576 host"
n1=$(wc -l <"$PLOG")
t_out "pkg fetch again: integrity check" 0 "Integrity check was successful." pkgh -o ABI_FILE="$UNAME" fetch -y -d -o "$PR" nginx pkg
if [ "$(wc -l <"$PLOG")" -eq "$n1" ]; then ok "nothing fetched twice"; else ko "nothing fetched twice"; fi
echo tampered >>"$PR/All/nginx-1.26.2.pkg"
t_rc "a changed file is fetched again" 0 pkgh -o ABI_FILE="$UNAME" fetch -y -q -d -o "$PR" nginx pkg
if [ "$(grep -c 'net package nginx-1.26.2' "$PLOG")" -eq 2 ]; then ok "refetch logged"; else ko "refetch logged"; fi
t_err "pkg repo of a missing dir" 1 "No such file or directory" pkg repo "$FAKEBSD_ROOT/srv/none"
t_out "pkg repo" 0 "Packing files for repository:  done" pkg repo "$PR"
t_file "pkg repo catalogue" "$PR/data.pkg" "nginx 1.26.2 1048576 pcre2"
t_file "pkg repo meta.conf" "$PR/meta.conf" "version = 2;"
t_out "pkg query -F %dn" 0 "pcre2" pkg query -F "$PR/All/nginx-1.26.2.pkg" %dn
t_err "pkg query other forms" 1 "fakebsd models only pkg query -F" pkg query %n nginx
# a jail that installs from the host's repository, mounted read-only
bastille create -T -B -g 10.0.9.1 pj 15.0-RELEASE 10.0.9.5/24 wardenbr0 >/dev/null 2>&1
PJ=$B/jails/pj/root
mkdir -p "$PJ/usr/local/etc/pkg/repos"
printf 'FreeBSD-ports: { enabled: no }\nFreeBSD-ports-kmods: { enabled: no }\nwarden: {\n  url: "file:///var/db/warden/packages",\n  signature_type: "none",\n  enabled: yes\n}\n' >"$PJ/usr/local/etc/pkg/repos/warden.conf"
t_rc "mount the repository" 0 bastille mount pj "$PR" /var/db/warden/packages nullfs ro 0 0
t_err "bootstrap needs Latest/pkg.pkg" 1 "A pre-built version of pkg could not be found for your system." bastille pkg pj install nginx
mkdir -p "$PR/Latest" && cp "$PR/All/pkg-2.1.2.pkg" "$PR/Latest/pkg.pkg"
t_err "unknown package in the local repository" 1 "No packages available to install matching 'vim' have been found in the repositories" bastille pkg pj install vim
t_out "install from the local repository" 0 "Installing nginx-1.26.2" bastille pkg pj install nginx
t_file "local bootstrap" "$PLOG" "local package pkg-2.1.2 11534336 jail:pj"
t_file "local package" "$PLOG" "local package nginx-1.26.2 1048576 jail:pj"
if grep -q 'net .* jail:pj' "$PLOG"; then ko "the jail used no network"; else ok "the jail used no network"; fi
t_file "the package's rc script" "$PJ/usr/local/etc/rc.d/nginx" "nginx-1.26.2"
sed -i.bak 's/"none"/"fingerprints"/' "$PJ/usr/local/etc/pkg/repos/warden.conf"
t_err "an unsigned local repository with fingerprints" 1 "No signature found" bastille pkg pj install pcre2
mv "$PJ/usr/local/etc/pkg/repos/warden.conf.bak" "$PJ/usr/local/etc/pkg/repos/warden.conf"
# MOUNT keeps a mount point that is there; umount.sh removes it, and exits 0 on
# every per-jail failure (error_continue)
mkdir -p "$WORK/other-repo"
t_out "a second MOUNT at the same point only warns" 0 "Mountpoint already present" bastille mount pj "$WORK/other-repo" /var/db/warden/packages nullfs ro 0 0
t_file "the first mount stays" "$B/jails/pj/fstab" "$PR $PJ/var/db/warden/packages nullfs ro 0 0"
t_out "umount the repository" 0 "Unmounted: $PJ/var/db/warden/packages" bastille umount pj /var/db/warden/packages
if grep -q "/var/db/warden/packages" "$B/jails/pj/fstab"; then ko "umount removed the fstab line"; else ok "umount removed the fstab line"; fi
t_err "umount of a mount point that is not there exits 0" 0 "The specified mount point does not exist." bastille umount pj /var/db/warden/packages
t_err "umount takes TARGET and PATH" 1 "Usage: bastille umount" bastille umount pj
t_rc "mount the repository again" 0 bastille mount pj "$PR" /var/db/warden/packages nullfs ro 0 0
bastille stop pj >/dev/null 2>&1
t_err "umount skips a stopped jail, exit 0" 0 "Use [-a|--auto] to auto-start the jail." bastille umount pj /var/db/warden/packages
t_file "and leaves its fstab" "$B/jails/pj/fstab" "$PJ/var/db/warden/packages"
t_err "mount skips a stopped jail, exit 0" 0 "Jail is not running." bastille mount pj "$WORK/other-repo" /var/db/x nullfs ro 0 0
if grep -q "/var/db/x" "$B/jails/pj/fstab"; then ko "mount on a stopped jail added nothing"; else ok "mount on a stopped jail added nothing"; fi
t_rc "umount -a starts the jail" 0 bastille umount -a pj /var/db/warden/packages
if grep -q "/var/db/warden/packages" "$B/jails/pj/fstab"; then ko "umount -a removed the line"; else ok "umount -a removed the line"; fi
t_rc "mount the repository for the next cases" 0 bastille mount pj "$PR" /var/db/warden/packages nullfs ro 0 0
# without a repository configuration: FreeBSD's repositories, over the network
bastille create -T -B -g 10.0.9.1 nj 15.0-RELEASE 10.0.9.6/24 wardenbr0 >/dev/null 2>&1
t_rc "install from FreeBSD-ports" 0 bastille pkg nj install llama-cpp
t_file "the jail downloads the catalogue" "$PLOG" "net catalogue FreeBSD-ports 9437184 jail:nj"
t_file "and the package" "$PLOG" "net package llama-cpp-5437 12582912 jail:nj"
t_nofile "FreeBSD's llama-cpp has no llama-server" "$B/jails/nj/root/usr/local/bin/llama-server"
# poudriere
t_err "poudriere without poudriere.conf" 1 "Unable to find a readable poudriere.conf" poudriere bulk -j w -b quarterly misc/llama-cpp
mkdir -p "$FAKEBSD_ROOT/usr/local/etc" && echo 'NO_ZFS=yes' >"$FAKEBSD_ROOT/usr/local/etc/poudriere.conf"
t_err "poudriere unknown jail" 1 "No such jail: w150" poudriere bulk -j w150 -b quarterly misc/llama-cpp
t_err "poudriere jail name with a period" 1 "The jailname cannot contain a period" poudriere jail -c -j w15.0 -v 15.0-RELEASE
t_rc "poudriere jail -c" 0 poudriere jail -c -j w150 -v 15.0-RELEASE
t_err "poudriere unknown ports tree" 2 "No such ports tree nope" poudriere bulk -j w150 -p nope misc/llama-cpp
t_rc "poudriere ports -c" 0 poudriere ports -c
t_err "poudriere bad branch" 1 "Invalid branch name for package fetching: weekly" poudriere bulk -j w150 -b weekly misc/llama-cpp
PD=$FAKEBSD_ROOT/usr/local/poudriere/data/packages
t_rc "poudriere bulk with the port's defaults" 0 poudriere bulk -j w150 -b quarterly misc/llama-cpp
if grep -q llama-server "$PD/w150-default/All/llama-cpp-5437.pkg"; then ko "default options: no llama-server"; else ok "default options: no llama-server"; fi
t_file "-b fetches the dependencies as packages" "$PLOG" "net package vulkan-loader-1.4.303 262144 poudriere"
mkdir -p "$FAKEBSD_ROOT/usr/local/etc/poudriere.d/ws-options/misc_llama-cpp"
printf 'OPTIONS_FILE_SET+=CURL\nOPTIONS_FILE_SET+=EXAMPLES\nOPTIONS_FILE_SET+=VULKAN\n' >"$FAKEBSD_ROOT/usr/local/etc/poudriere.d/ws-options/misc_llama-cpp/options"
t_out "poudriere bulk -z with EXAMPLES" 0 "Built ports: misc/llama-cpp" poudriere bulk -j w150 -p default -z ws -b quarterly misc/llama-cpp
t_file "the build has llama-server" "$PD/w150-default-ws/All/llama-cpp-5437.pkg" "/usr/local/bin/llama-server"
t_out "a second bulk builds nothing" 0 "No package builds needed" poudriere bulk -j w150 -p default -z ws -b quarterly misc/llama-cpp

# ---- injection ---------------------------------------------------------------------------------------
t_err "FAKEBSD_FAIL" 1 "fakebsd: injected failure: bastille create x 14.2-RELEASE 10.0.1.9 wardenbr0" \
	env FAKEBSD_FAIL='bastille create*' bastille create x 14.2-RELEASE 10.0.1.9 wardenbr0
t_nofile "FAKEBSD_FAIL changed nothing" "$B/jails/x"
t_file "log FAIL" "$LOG" "FAIL bastille create x 14.2-RELEASE 10.0.1.9 wardenbr0"
t_err "FAKEBSD_FAIL pattern list" 1 "injected failure" env FAKEBSD_FAIL='nothing
*pfctl -f*' pfctl -f "$WORK/pf.conf"
rm -f "$FAKEBSD_ROOT/var/fakebsd/mutcount"
run env FAKEBSD_KILL_AFTER=2 sh -c 'sysrc k1=1 >/dev/null; sysrc -n k1 >/dev/null; sysrc k2=2 >/dev/null; sysrc k3=3 >/dev/null; echo survived'
if [ "$rc" -ne 0 ] && ! grep -q survived "$OUT"; then ok "FAKEBSD_KILL_AFTER kills parent"; else ko "FAKEBSD_KILL_AFTER kills parent (exit $rc)"; fi
t_file "KILL logged" "$LOG" "KILL sysrc k3=3"
t_err "third MUT not applied" 1 "unknown variable 'k3'" sysrc -n k3

echo "fakebsd selftest: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
