"""Fleet operations between deployments: metric collection, alerts and schedules.

A collection is a one-task run of the `collect` module (modules/collect.py and
collect_script.py build the remote script and parse its output; runs/collect.py runs it);
collect.py here adds alert rules and retention, alerts.py evaluates alerts.yml, status.py
reads the latest samples, schedules.py, cron.py and scheduler.py drive `machineroom
scheduler`. The web dashboard is in web/.
"""
