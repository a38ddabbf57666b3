#!/usr/bin/env bash
# Makes sure the real clients the tests and benchmarks drive are installed:
# the OpenSSH client (ssh, ssh-keygen, ssh-keyscan), OpenSSH's server (the
# gateway benchmark's baseline), tmux (interactive terminals), ssh-audit,
# pgrep, and asciinema (plays exported session recordings). Installs what
# is missing from Debian's packages. kubectl 1.27 to 1.33 come with the
# machine image (/usr/lib/google-cloud-sdk/bin).
set -euo pipefail

log() { echo "ensure-tools: $*" >&2; }

missing=()
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keyscan >/dev/null 2>&1 || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v ssh-audit >/dev/null 2>&1 || missing+=(ssh-audit)
command -v pgrep >/dev/null 2>&1 || missing+=(procps)
command -v asciinema >/dev/null 2>&1 || missing+=(asciinema)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # openssh-server's postinst may try to start sshd: the benchmark starts
    # its own on a loopback port, so a failure to start one here is fine.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
