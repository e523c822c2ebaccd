#!/bin/sh
# Apply "path owner group mode" lines (written by pibake at render time) with chown/chmod.
# Idempotent. Paths must not contain whitespace; blank lines and # comments are ignored.
# Every line is attempted; the exit status is 1 if any line failed (e.g. a user that does not
# exist yet because its package is still missing), so systemd can retry.
set -u
list=${1:-/etc/pibake/ownership.list}
[ -r "$list" ] || { echo "pibake-ownership: $list not readable" >&2; exit 1; }
status=0
while read -r path owner group mode rest; do
    case $path in '' | '#'*) continue ;; esac
    if [ -z "$mode" ] || [ -n "$rest" ]; then
        echo "pibake-ownership: malformed line for $path" >&2; status=1; continue
    fi
    if [ ! -e "$path" ] && [ ! -L "$path" ]; then
        echo "pibake-ownership: $path does not exist" >&2; status=1; continue
    fi
    chown -h "$owner:$group" "$path" || { status=1; continue; }
    # chmod would follow a symlink to its target: leave links alone.
    [ -L "$path" ] || chmod "$mode" "$path" || status=1
done < "$list"
exit "$status"
