#!/bin/sh
# %post for flytube ($1 = 1 on install, 2 on upgrade).
# /etc/flytube holds the key: root:flytube 0750.
chown root:flytube /etc/flytube && chmod 0750 /etc/flytube
# Like %systemd_post: on first install apply the preset policy (Fedora and
# RHEL presets leave new units disabled). Never start an unconfigured daemon.
if [ "$1" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload preset flytube.service >/dev/null 2>&1 || :
fi
exit 0
