#!/bin/sh
# Idempotent: disable Debian's default nginx site, check the configuration, reload nginx.
set -eu
nginx_dir=${PIBAKE_NGINX_DIR:-/etc/nginx}
command -v nginx >/dev/null || { echo "pibake-web-setup: nginx is not installed yet" >&2; exit 1; }
if [ -e "$nginx_dir/sites-enabled/default" ] || [ -L "$nginx_dir/sites-enabled/default" ]; then
    rm -f "$nginx_dir/sites-enabled/default"
    echo "pibake-web-setup: disabled the default site"
fi
nginx -t -q
systemctl reload-or-restart nginx.service
