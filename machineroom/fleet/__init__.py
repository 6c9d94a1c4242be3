"""Fleet operations between deployments: metric collection, alerts and schedules.

collector.py builds the one remote script a collection runs and parses its output;
collect.py runs it on many hosts and stores the samples; alerts.py evaluates alerts.yml;
schedules.py and cron.py drive `machineroom scheduler`. The web dashboard is in web/.
"""
