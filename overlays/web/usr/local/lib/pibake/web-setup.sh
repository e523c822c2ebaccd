#!/bin/sh
# Idempotent: disable Debian's default nginx site, check the configuration, reload nginx.
# PIBAKE_NGINX_DIR and PIBAKE_NGINX_RELOAD override the folder and the reload command (tests).
set -eu
nginx_dir=${PIBAKE_NGINX_DIR:-/etc/nginx}
reload=${PIBAKE_NGINX_RELOAD:-systemctl reload-or-restart nginx.service}
command -v nginx >/dev/null || { echo "pibake-web-setup: nginx is not installed yet" >&2; exit 1; }
if [ -e "$nginx_dir/sites-enabled/default" ] || [ -L "$nginx_dir/sites-enabled/default" ]; then
    rm -f "$nginx_dir/sites-enabled/default"
    echo "pibake-web-setup: disabled the default site"
fi
nginx -t -q -c "$nginx_dir/nginx.conf"
sh -c "$reload"
