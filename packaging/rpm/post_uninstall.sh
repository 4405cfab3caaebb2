#!/bin/sh
# %postun for flytube ($1 = 0 on erase, 1 on upgrade).
# Like %systemd_postun_with_restart: reload units, and on upgrade restart a
# running flytube so it runs the new binary (a stopped one stays stopped).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart flytube.service >/dev/null 2>&1 || :
    fi
fi
exit 0
