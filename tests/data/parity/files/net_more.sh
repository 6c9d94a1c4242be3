#!/bin/sh
# run by the `script` task of net_more.yml: its arguments and folder, into a file
printf '%s|%s|%s\n' "$1" "$2" "$(pwd)" > script.txt
