#!/usr/bin/env bash
# Self-contained demo/test mail stack for eas-gateway.
#
# Starts a private Dovecot (IMAP + LMTP) and a private Postfix (SMTP +
# authenticated submission) whose configuration, queues, mailboxes and logs
# all live under one state directory, independent of any system-wide
# Dovecot/Postfix configuration.  See deploy/dev/README.md.
#
# Usage: deploy/dev/mailstack.sh {start|stop|restart|status|add-user USER PASSWORD|env}
#
# Must run as root (it installs packages, creates a system user and binds
# privileged ports).  Debian 12 (Dovecot 2.3, Postfix 3.7) is the target.

set -eu

# ---------------------------------------------------------------------------
# Settings (overridable from the environment)
# ---------------------------------------------------------------------------
DEV_DIR=${EAS_DEV_DIR:-/var/lib/eas-gateway-dev}
case $DEV_DIR in
    /*) ;;
    *) DEV_DIR=$PWD/$DEV_DIR ;;
esac
DEV_DIR=${DEV_DIR%/}
DOMAIN=example.test
LISTEN_ADDR=127.0.0.1
IMAP_PORT=${EAS_DEV_IMAP_PORT:-143}
SMTP_PORT=${EAS_DEV_SMTP_PORT:-25}
SUBMISSION_PORT=${EAS_DEV_SUBMISSION_PORT:-587}
VMAIL_USER=${EAS_DEV_VMAIL_USER:-easvmail}
START_TIMEOUT=${EAS_DEV_START_TIMEOUT:-60}
# Owner of the passwd-file (so that tests running as an unprivileged user can
# append to it).  Defaults to the user that invoked sudo, else root.
USERS_OWNER=${EAS_DEV_USERS_OWNER:-${SUDO_USER:-root}}
# The secret Dovecot sends with push events (push.events_secret of the test gateways).
PUSH_SECRET=${EAS_DEV_PUSH_SECRET:-eas-dev-push-events-secret}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)

PACKAGES="dovecot-core dovecot-imapd dovecot-lmtpd postfix libwbxml2-utils openssl sqlite3"

# Layout of the state directory.
DC_DIR=$DEV_DIR/dovecot               # Dovecot config + passwd-file
DC_CONF=$DC_DIR/dovecot.conf
DC_RUN=$DC_DIR/run                    # Dovecot base_dir (sockets, master.pid)
DC_STATE=$DC_DIR/state                # Dovecot state_dir
PASSWD_FILE=$DC_DIR/users
PASSWD_LOCK=$DC_DIR/users.lock
USERS_DIR=$DC_DIR/users.d             # one passwd-file per user (optional)
LMTP_SOCKET=$DC_RUN/lmtp
MAIL_DIR=$DEV_DIR/mail                # Maildirs: $MAIL_DIR/<domain>/<local>/Maildir
PF_CONF=$DEV_DIR/postfix              # Postfix config_directory
PF_QUEUE=$DEV_DIR/postfix-queue       # Postfix queue_directory
PF_DATA=$DEV_DIR/postfix-data         # Postfix data_directory
PF_AUTH_SOCKET=$PF_QUEUE/private/auth # Dovecot SASL socket used by Postfix
LOG_DIR=$DEV_DIR/log
DC_LOG=$LOG_DIR/dovecot.log
PUSH_LUA=$DC_DIR/eas-push.lua          # copy of deploy/dovecot/eas-push.lua
PF_LOG=$LOG_DIR/postfix.log

PROG=${0##*/}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

show_log_tail() {
    # $1 = log file, $2 = label
    if [ -s "$1" ]; then
        printf '%s: ---- last lines of %s (%s) ----\n' "$PROG" "$2" "$1" >&2
        tail -n 40 "$1" >&2 || true
        printf '%s: ---- end of %s ----\n' "$PROG" "$2" >&2
    else
        printf '%s: (%s log %s is empty or missing)\n' "$PROG" "$2" "$1" >&2
    fi
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "'$1' must be run as root"
}

# port_open PORT -> 0 if something accepts TCP connections on LISTEN_ADDR:PORT
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$LISTEN_ADDR" "$1" 2>/dev/null
}

# wait_for TIMEOUT DESCRIPTION COMMAND... : poll COMMAND every 0.2 s
wait_for() {
    local limit=$1 desc=$2 i=0
    shift 2
    while ! "$@"; do
        i=$((i + 1))
        if [ "$i" -ge $((limit * 5)) ]; then
            warn "timed out after ${limit}s waiting for $desc"
            return 1
        fi
        sleep 0.2
    done
}

pid_alive() {
    # $1 = pid file
    local pid
    [ -r "$1" ] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

dovecot_running() { pid_alive "$DC_RUN/master.pid"; }
postfix_running() { pid_alive "$PF_QUEUE/pid/master.pid"; }

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ---------------------------------------------------------------------------
# Package installation without starting system-wide daemons
# ---------------------------------------------------------------------------
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
POLICY_INSTALLED=0

restore_policy() {
    if [ "$POLICY_INSTALLED" -eq 1 ]; then
        if [ -n "$POLICY_BACKUP" ]; then
            mv -f "$POLICY_BACKUP" "$POLICY"
        else
            rm -f "$POLICY"
        fi
        POLICY_INSTALLED=0
    fi
}

install_packages() {
    local missing="" p
    for p in $PACKAGES; do
        pkg_installed "$p" || missing="$missing $p"
    done
    [ -n "$missing" ] || return 0

    command -v apt-get >/dev/null 2>&1 || die "missing packages:$missing (and no apt-get to install them)"
    say "installing Debian packages:$missing"

    # Keep package maintainer scripts from starting system-wide daemons.
    if [ -e "$POLICY" ] || [ -L "$POLICY" ]; then
        POLICY_BACKUP=$(mktemp /usr/sbin/.policy-rc.d.eas-dev.XXXXXX)
        cp -a "$POLICY" "$POLICY_BACKUP"
    fi
    trap 'restore_policy' EXIT
    trap 'restore_policy; exit 130' INT TERM
    POLICY_INSTALLED=1
    printf '#!/bin/sh\n# installed temporarily by eas-gateway deploy/dev/mailstack.sh\nexit 101\n' >"$POLICY"
    chmod 0755 "$POLICY"

    # Postfix must not ask questions nor configure a system mailer.
    if ! pkg_installed postfix; then
        printf '%s\n' \
            'postfix postfix/main_mailer_type select No configuration' \
            'postfix postfix/mailname string mail.example.test' |
            debconf-set-selections
    fi

    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || { restore_policy; die "apt-get update failed"; }
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing ||
        { restore_policy; die "apt-get install failed for:$missing"; }

    restore_policy
    trap - EXIT INT TERM
}

# ---------------------------------------------------------------------------
# Filesystem / users
# ---------------------------------------------------------------------------
check_parent_traversable() {
    # The unprivileged Dovecot/Postfix processes must be able to reach the
    # state directory (e.g. it cannot live below /root, mode 0700).
    local d=$DEV_DIR mode
    while [ -n "$d" ] && [ "$d" != "/" ]; do
        d=$(dirname "$d")
        [ -d "$d" ] || continue
        mode=$(stat -c '%A' "$d")
        case $mode in
            ?????????[xt]) ;;
            *) die "state dir $DEV_DIR: parent $d ($mode) is not traversable by other users; choose another EAS_DEV_DIR" ;;
        esac
    done
}

ensure_vmail_user() {
    if ! getent passwd "$VMAIL_USER" >/dev/null; then
        say "creating system user $VMAIL_USER"
        useradd --system --user-group --no-create-home \
            --home-dir "$MAIL_DIR" --shell /usr/sbin/nologin \
            --comment 'eas-gateway dev virtual mail' "$VMAIL_USER"
    fi
    local u
    for u in dovecot dovenull postfix; do
        getent passwd "$u" >/dev/null || die "system user '$u' is missing (broken dovecot/postfix package install?)"
    done
    getent group postdrop >/dev/null || die "group 'postdrop' is missing (broken postfix install?)"
}

ensure_dirs() {
    check_parent_traversable
    mkdir -p "$DEV_DIR" "$DC_DIR" "$DC_RUN" "$DC_STATE" "$MAIL_DIR" "$PF_CONF" "$PF_QUEUE" "$PF_DATA" "$LOG_DIR"
    chmod 0755 "$DEV_DIR" "$DC_DIR" "$PF_CONF" "$PF_QUEUE" "$LOG_DIR"
    chown root:root "$DEV_DIR" "$PF_CONF" "$PF_QUEUE"
    chown "$VMAIL_USER:$VMAIL_USER" "$MAIL_DIR"
    chmod 0750 "$MAIL_DIR"
    chown postfix: "$PF_DATA"
    chmod 0700 "$PF_DATA"
    mkdir -p "$USERS_DIR"
    chown "$USERS_OWNER:dovecot" "$USERS_DIR" 2>/dev/null || chown root:dovecot "$USERS_DIR"
    chmod 2770 "$USERS_DIR"
}

# ---------------------------------------------------------------------------
# passwd-file
# ---------------------------------------------------------------------------
passwd_file_perms() {
    chown "$USERS_OWNER:dovecot" "$PASSWD_FILE" 2>/dev/null ||
        chown "root:dovecot" "$PASSWD_FILE" 2>/dev/null || true
    chmod 0660 "$PASSWD_FILE"
}

validate_user() {
    case $1 in
        *[!a-z0-9._+@-]* | '' | *@*@* | @* | *@) return 1 ;;
        *@*) return 0 ;;
        *) return 1 ;;
    esac
}

validate_password() {
    case $1 in
        '' | *:* | *[[:cntrl:]]*) return 1 ;;
        *) return 0 ;;
    esac
}

# set_user USER PASSWORD : add the user, or replace its password.
set_user() {
    local user password line tmp
    user=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
    password=$2
    validate_user "$user" || die "invalid user '$1' (want local@domain using a-z 0-9 . _ + -)"
    validate_password "$password" || die "invalid password (must be non-empty, no ':' and no control characters)"
    line="$user:{PLAIN}$password::::::"

    mkdir -p "$DC_DIR"
    [ -e "$PASSWD_FILE" ] || { : >>"$PASSWD_FILE"; passwd_file_perms; }
    (
        flock -x 9
        if awk -F: -v u="$user" '$1 == u { found = 1 } END { exit !found }' "$PASSWD_FILE"; then
            if grep -q -x -F -- "$line" "$PASSWD_FILE"; then
                exit 0
            fi
            # Replace atomically (write + rename).
            tmp=$(mktemp "$DC_DIR/.users.XXXXXX")
            awk -F: -v u="$user" -v l="$line" '$1 == u { print l; next } { print }' "$PASSWD_FILE" >"$tmp"
            chown --reference="$PASSWD_FILE" "$tmp"
            chmod --reference="$PASSWD_FILE" "$tmp"
            mv -f "$tmp" "$PASSWD_FILE"
            echo "updated"
        else
            # One write(2) of the whole line to an O_APPEND descriptor.
            printf '%s\n' "$line" >>"$PASSWD_FILE"
            echo "added"
        fi
    ) 9>>"$PASSWD_LOCK"
}

ensure_demo_users() {
    local u
    for u in alice bob; do
        if ! [ -e "$PASSWD_FILE" ] || ! awk -F: -v u="$u@$DOMAIN" '$1 == u { found = 1 } END { exit !found }' "$PASSWD_FILE"; then
            set_user "$u@$DOMAIN" "$u-password" >/dev/null
        fi
    done
    passwd_file_perms
}

# ---------------------------------------------------------------------------
# Dovecot
# ---------------------------------------------------------------------------
write_dovecot_conf() {
    local tmp
    install -m 0644 "$SCRIPT_DIR/../dovecot/eas-push.lua" "$PUSH_LUA"
    tmp=$(mktemp "$DC_DIR/.dovecot.conf.XXXXXX")
    cat >"$tmp" <<EOF
# Generated by deploy/dev/mailstack.sh - do not edit, rewritten on every start.
# Private Dovecot instance of the eas-gateway dev mail stack.

instance_name = eas-dev
base_dir = $DC_RUN
state_dir = $DC_STATE
log_path = $DC_LOG
info_log_path = $DC_LOG
debug_log_path = $DC_LOG
# Microseconds: benches/push.rs times each delivery by its "saved mail" line.
log_timestamp = "%Y-%m-%d %H:%M:%S.%{usecs} "
auth_verbose = yes
verbose_proctitle = yes
hostname = mail.$DOMAIN
postmaster_address = postmaster@$DOMAIN

protocols = imap lmtp
listen = $LISTEN_ADDR
shutdown_clients = yes

# Demo stack on loopback only: no TLS, cleartext logins allowed.
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login

# The gateway runs on a trusted network and may forward the phone's address
# with IMAP ID (x-originating-ip).  Trusted clients also skip the per-IP
# auth penalty, so failed logins from tests do not slow down later logins.
login_trusted_networks = 127.0.0.0/8
# Reply to failed logins immediately (default 2 secs).
auth_failure_delay = 0
auth_username_format = %Lu
auth_cache_size = 0

# Authentication: one passwd-file for passdb and userdb.  Dovecot stats the
# file on every lookup and reloads it when it changed, so users appended to
# it are usable immediately, without restart.
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu $PASSWD_FILE
}
userdb {
  driver = passwd-file
  args = username_format=%Lu $PASSWD_FILE
}
# Dovecot re-stats a passwd-file at most once per second, so a line appended
# to the file above may stay invisible for up to ~1 s.  Per-user files in
# USERS_DIR (one file per address, same line format) are looked up by path
# and are visible immediately: preferred for tests that create users.
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu $USERS_DIR/%Lu
}
userdb {
  driver = passwd-file
  args = username_format=%Lu $USERS_DIR/%Lu
}

# Every mailbox belongs to one virtual mail system user.
mail_uid = $VMAIL_USER
mail_gid = $VMAIL_USER
first_valid_uid = 1
mail_home = $MAIL_DIR/%Ld/%Ln
mail_location = maildir:~/Maildir
mailbox_list_index = yes

namespace inbox {
  inbox = yes
  separator = /
  prefix =
  mailbox INBOX {
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Archive {
    special_use = \\Archive
    auto = subscribe
  }
}

# Room for a push watcher per user for a thousand users at once (benches/push.rs): every
# IMAP connection is a process, and every process is a client of the log, config, anvil
# and stats services, whose client limits default to default_client_limit (1000).
default_client_limit = 10000
service imap {
  process_limit = 5000
}

# Push events to the gateway (deploy/dovecot/eas-push.conf): posted only for users whose
# userdb entry has an eas_push_url field (tests give theirs, as userdb_eas_push_url=... in
# their users.d file, the URL of their gateway's events listener), so other users cost
# nothing but the plugin's hooks.
plugin {
  push_notification_driver = lua:file=$PUSH_LUA
  eas_push_secret = $PUSH_SECRET
}

protocol imap {
  mail_plugins = \$mail_plugins mail_lua notify push_notification push_notification_lua
  # The gateway keeps several connections per user (sync, ping/IDLE, ...).
  mail_max_userip_connections = 50
  imap_idle_notify_interval = 2 mins
  # Log what clients send with the IMAP ID command.
  imap_id_log = *
}

protocol lmtp {
  mail_plugins = \$mail_plugins mail_lua notify push_notification push_notification_lua
  # Deliver to the full address as login name.
  auth_username_format = %Lu
}

service imap-login {
  # One long-lived login process, already connected to auth: no fork and
  # no auth handshake per connection.
  service_count = 0
  process_min_avail = 1
  inet_listener imap {
    address = $LISTEN_ADDR
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}

service lmtp {
  unix_listener lmtp {
    mode = 0660
    user = postfix
    group = postfix
  }
}

# Disable the per-IP authentication penalty (it delays even successful logins
# from 127.0.0.1 by up to 15 s after a failed one, and also hits SASL logins
# coming through Postfix).  Moving anvil's penalty socket away makes the auth
# process find no penalty service (ENOENT) and skip penalty tracking.
service anvil {
  unix_listener anvil-auth-penalty {
    path = anvil-auth-penalty-disabled
  }
}

service auth {
  # SASL for Postfix submission.
  unix_listener $PF_AUTH_SOCKET {
    mode = 0660
    user = postfix
    group = postfix
  }
  unix_listener auth-userdb {
    mode = 0600
    user = $VMAIL_USER
  }
}
EOF
    chmod 0644 "$tmp"
    mv -f "$tmp" "$DC_CONF"
}

start_dovecot() {
    if dovecot_running; then
        say "dovecot already running (pid $(cat "$DC_RUN/master.pid"))"
        return 0
    fi
    if port_open "$IMAP_PORT"; then
        die "port $LISTEN_ADDR:$IMAP_PORT is already in use by another process (system dovecot?)"
    fi
    doveconf -c "$DC_CONF" -n >/dev/null 2>"$LOG_DIR/doveconf.err" || {
        cat "$LOG_DIR/doveconf.err" >&2
        die "invalid Dovecot configuration $DC_CONF"
    }
    # Drop stale sockets of a previous run (Dovecot leaves them behind; a
    # stale anvil-auth-penalty socket would make each auth process start
    # wait ~5 s for a connection that is refused).
    find "$DC_RUN" -maxdepth 1 \( -type s -o -type p \) -delete 2>/dev/null || true
    say "starting dovecot (config $DC_CONF)"
    # Detach from our stdio: the master keeps stderr open, which would
    # keep a pipe like "mailstack.sh start 2>&1 | tee" from ever closing.
    if ! dovecot -c "$DC_CONF" </dev/null >"$LOG_DIR/dovecot-start.out" 2>&1; then
        cat "$LOG_DIR/dovecot-start.out" >&2
        show_log_tail "$DC_LOG" dovecot
        die "dovecot failed to start"
    fi
    if ! wait_for "$START_TIMEOUT" "IMAP on $LISTEN_ADDR:$IMAP_PORT" port_open "$IMAP_PORT" ||
        ! wait_for 10 "LMTP socket $LMTP_SOCKET" test -S "$LMTP_SOCKET" ||
        ! wait_for 10 "auth socket $PF_AUTH_SOCKET" test -S "$PF_AUTH_SOCKET"; then
        show_log_tail "$DC_LOG" dovecot
        die "dovecot did not come up"
    fi
}

stop_dovecot() {
    if ! dovecot_running; then
        say "dovecot not running"
        return 0
    fi
    local pid
    pid=$(tr -dc '0-9' <"$DC_RUN/master.pid")
    say "stopping dovecot (pid $pid)"
    dovecot -c "$DC_CONF" stop 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 20 "dovecot (pid $pid) to exit" kill_0_fails "$pid"; then
        warn "dovecot did not exit, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

kill_0_fails() { ! kill -0 "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------
# Postfix
# ---------------------------------------------------------------------------
write_postfix_conf() {
    local tmp
    tmp=$(mktemp "$PF_CONF/.main.cf.XXXXXX")
    cat >"$tmp" <<EOF
# Generated by deploy/dev/mailstack.sh - do not edit, rewritten on every start.
# Private Postfix instance of the eas-gateway dev mail stack.
compatibility_level = 3.6

queue_directory = $PF_QUEUE
data_directory = $PF_DATA
mail_owner = postfix
setgid_group = postdrop
syslog_name = eas-dev-postfix
maillog_file = $PF_LOG
maillog_file_prefixes = /var, /dev/stdout, $LOG_DIR

myhostname = mail.$DOMAIN
mydomain = $DOMAIN
myorigin = \$mydomain
inet_interfaces = $LISTEN_ADDR
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = \$myhostname ESMTP eas-gateway dev stack
biff = no
append_dot_mydomain = no
readme_directory = no
smtpd_peername_lookup = no

# No local delivery at all.
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =

# Virtual domain delivered to Dovecot over LMTP.  Postfix accepts every
# recipient of the domain; Dovecot rejects unknown users at delivery time and
# Postfix then bounces to the sender.
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps =
virtual_transport = lmtp:unix:$LMTP_SOCKET

# Mail for any other domain never leaves this machine: it is discarded
# (logged as "status=sent (... discarded ...)").
default_transport = discard:external mail is discarded by the eas-gateway dev stack
relay_transport = \$default_transport
relayhost =
smtp_dns_support_level = disabled

# Sizes: 100 MB messages, no mailbox limit.
message_size_limit = 104857600
mailbox_size_limit = 0
virtual_mailbox_limit = 0

# Port 25 (tests inject mail): loopback only, no authentication.
smtpd_sasl_auth_enable = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination
smtpd_recipient_restrictions =

# SASL via Dovecot (used by the submission service).
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = no
broken_sasl_auth_clients = no

# Fast turnaround for tests.
in_flow_delay = 0
smtpd_error_sleep_time = 0
queue_run_delay = 10s
minimal_backoff_time = 10s
maximal_backoff_time = 60s
delay_warning_time = 0
EOF
    chmod 0644 "$tmp"
    mv -f "$tmp" "$PF_CONF/main.cf"

    tmp=$(mktemp "$PF_CONF/.master.cf.XXXXXX")
    cat >"$tmp" <<EOF
# Generated by deploy/dev/mailstack.sh - do not edit, rewritten on every start.
# service type  private unpriv  chroot  wakeup  maxproc command + args
$LISTEN_ADDR:$SMTP_PORT inet n - n - - smtpd
$LISTEN_ADDR:$SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=eas-dev-postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_security_level=none
  -o smtpd_tls_auth_only=no
  -o smtpd_client_restrictions=
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
  -o milter_macro_daemon_name=ORIGINATING
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    chmod 0644 "$tmp"
    mv -f "$tmp" "$PF_CONF/master.cf"
}

pf() { postfix -c "$PF_CONF" "$@"; }

prepare_postfix_queue() {
    # Creates the queue directories (incl. private/ for the Dovecot SASL
    # socket) with the ownership Postfix insists on.
    if ! pf check </dev/null >"$LOG_DIR/postfix-check.out" 2>&1; then
        cat "$LOG_DIR/postfix-check.out" >&2
        show_log_tail "$PF_LOG" postfix
        die "postfix check failed for $PF_CONF"
    fi
}

start_postfix() {
    if postfix_running; then
        say "postfix already running (pid $(tr -dc '0-9' <"$PF_QUEUE/pid/master.pid"))"
        return 0
    fi
    local p
    for p in "$SMTP_PORT" "$SUBMISSION_PORT"; do
        if port_open "$p"; then
            die "port $LISTEN_ADDR:$p is already in use by another process (system postfix?)"
        fi
    done
    say "starting postfix (config $PF_CONF)"
    if ! pf start </dev/null >"$LOG_DIR/postfix-start.out" 2>&1; then
        cat "$LOG_DIR/postfix-start.out" >&2
        show_log_tail "$PF_LOG" postfix
        die "postfix failed to start"
    fi
    if ! wait_for "$START_TIMEOUT" "SMTP on $LISTEN_ADDR:$SMTP_PORT" port_open "$SMTP_PORT" ||
        ! wait_for "$START_TIMEOUT" "submission on $LISTEN_ADDR:$SUBMISSION_PORT" port_open "$SUBMISSION_PORT"; then
        show_log_tail "$PF_LOG" postfix
        die "postfix did not come up"
    fi
}

stop_postfix() {
    if ! postfix_running; then
        say "postfix not running"
        return 0
    fi
    local pid
    pid=$(tr -dc '0-9' <"$PF_QUEUE/pid/master.pid")
    say "stopping postfix (pid $pid)"
    pf stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 20 "postfix master (pid $pid) to exit" kill_0_fails "$pid"; then
        warn "postfix master did not exit, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
cmd_status() {
    local rc=0
    if dovecot_running; then
        printf 'dovecot: running (pid %s, config %s)\n' "$(tr -dc '0-9' <"$DC_RUN/master.pid")" "$DC_CONF"
    else
        printf 'dovecot: stopped\n'
        rc=3
    fi
    if postfix_running; then
        printf 'postfix: running (pid %s, config %s)\n' "$(tr -dc '0-9' <"$PF_QUEUE/pid/master.pid")" "$PF_CONF"
    else
        printf 'postfix: stopped\n'
        rc=3
    fi
    local name port
    for name in imap:$IMAP_PORT smtp:$SMTP_PORT submission:$SUBMISSION_PORT; do
        port=${name#*:}
        if port_open "$port"; then
            printf '%-11s %s:%s accepting connections\n' "${name%%:*}" "$LISTEN_ADDR" "$port"
        else
            printf '%-11s %s:%s not reachable\n' "${name%%:*}" "$LISTEN_ADDR" "$port"
        fi
    done
    printf 'state dir:  %s\n' "$DEV_DIR"
    printf 'passwd:     %s\n' "$PASSWD_FILE"
    printf 'logs:       %s %s\n' "$DC_LOG" "$PF_LOG"
    return $rc
}

cmd_start() {
    need_root start
    if dovecot_running && postfix_running; then
        say "already running"
        cmd_status || true
        return 0
    fi
    install_packages
    ensure_vmail_user
    ensure_dirs
    ensure_demo_users
    write_postfix_conf
    prepare_postfix_queue
    write_dovecot_conf
    start_dovecot
    start_postfix
    say "mail stack is up"
    cmd_status || true
}

# Rewrites the Dovecot configuration and applies it to the running Dovecot; `doveadm reload`
# keeps the open connections.
cmd_reload() {
    need_root reload
    dovecot_running || die "dovecot is not running (use start)"
    write_dovecot_conf
    doveconf -c "$DC_CONF" -n >/dev/null 2>"$LOG_DIR/doveconf.err" || {
        cat "$LOG_DIR/doveconf.err" >&2
        die "invalid Dovecot configuration $DC_CONF"
    }
    doveadm -c "$DC_CONF" reload
    say "dovecot configuration reloaded"
}

cmd_stop() {
    need_root stop
    # Postfix first: it delivers into Dovecot.
    if command -v postfix >/dev/null 2>&1; then
        stop_postfix
    fi
    if command -v dovecot >/dev/null 2>&1; then
        stop_dovecot
    fi
}

cmd_env() {
    cat <<EOF
export EAS_DEV_DIR='$DEV_DIR'
export EAS_DEV_IMAP='$LISTEN_ADDR:$IMAP_PORT'
export EAS_DEV_SMTP='$LISTEN_ADDR:$SMTP_PORT'
export EAS_DEV_SUBMISSION='$LISTEN_ADDR:$SUBMISSION_PORT'
export EAS_DEV_PASSWD_FILE='$PASSWD_FILE'
export EAS_DEV_USERS_DIR='$USERS_DIR'
export EAS_DEV_DOMAIN='$DOMAIN'
export EAS_DEV_MAIL_DIR='$MAIL_DIR'
export EAS_DEV_DOVECOT_LOG='$DC_LOG'
export EAS_DEV_POSTFIX_LOG='$PF_LOG'
export EAS_DEV_PUSH_SECRET='$PUSH_SECRET'
EOF
}

cmd_add_user() {
    [ $# -eq 2 ] || die "usage: $PROG add-user USER@DOMAIN PASSWORD"
    if [ "$(id -u)" -ne 0 ] && ! [ -w "$PASSWD_FILE" ]; then
        die "cannot write $PASSWD_FILE (run as root or as its owner)"
    fi
    local what
    what=$(set_user "$1" "$2")
    case $what in
        added) say "added $(printf '%s' "$1" | tr '[:upper:]' '[:lower:]') to $PASSWD_FILE" ;;
        updated) say "updated password of $(printf '%s' "$1" | tr '[:upper:]' '[:lower:]') in $PASSWD_FILE" ;;
        *) say "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]') already present, unchanged" ;;
    esac
}

usage() {
    cat <<EOF
usage: $PROG COMMAND
  start                     install packages if needed, start dovecot + postfix
  stop                      stop the dovecot + postfix started by this script
  restart                   stop, then start
  reload                    rewrite the Dovecot configuration and apply it (connections stay)
  status                    show what is running (exit 3 if not fully running)
  add-user USER PASSWORD    add a user (or change its password); no restart needed
  env                       print shell export lines (EAS_DEV_*)
state directory: \${EAS_DEV_DIR:-/var/lib/eas-gateway-dev} (now: $DEV_DIR)
EOF
}

main() {
    [ $# -ge 1 ] || { usage >&2; exit 2; }
    local cmd=$1
    shift
    case $cmd in
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_stop; cmd_start ;;
        reload) cmd_reload ;;
        status) cmd_status ;;
        add-user) cmd_add_user "$@" ;;
        env) cmd_env ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
