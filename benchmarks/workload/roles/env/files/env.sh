#!/bin/sh
# environment for the app
export APP_HOME=/srv/bench/app
export APP_CONF=/srv/bench/app/conf/app.conf
