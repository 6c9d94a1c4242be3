#!/bin/sh
# Prints one line a monitor can parse: host, load, free disk on /.
printf '%s load=%s disk_free=%s\n' "$(hostname)" "$(cut -d' ' -f1 /proc/loadavg)" \
    "$(df -P / | awk 'NR==2 {print $4}')"
