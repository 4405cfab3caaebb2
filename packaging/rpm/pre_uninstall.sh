#!/bin/sh
# %preun for flytube ($1 = 0 on erase, 1 on upgrade).
# Like %systemd_preun: on erase, stop and disable the unit.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now flytube.service >/dev/null 2>&1 || :
fi
exit 0
