#!/bin/sh
# %pre for flytube: create the service user before the files land, the way
# Fedora's sysusers.generate-pre.sh does for the packaged sysusers.d file
# (/usr/lib/sysusers.d/flytube-sysusers.conf).
getent group flytube >/dev/null || groupadd -r flytube
getent passwd flytube >/dev/null || \
    useradd -r -g flytube -d /nonexistent -s /sbin/nologin \
        -c "flytube SSH reverse-tunnel connector" flytube
exit 0
