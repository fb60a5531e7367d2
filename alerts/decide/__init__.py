"""The decide stage: what ingest stored -> geofence decisions and device-message rules ->
alert changes, persisted with the decision state in one transaction, then delivered.

- ``stage``: ``DecideStage``, the queue and the one worker thread (order, retries, lifecycle);
- ``decisions``: ``Decider``, one item's decisions and what is persisted with them;
- ``recovery``: the progress mark and the telemetry read back after a crash or an outage;
- ``jobs``: the scheduled sweeps, ticks and registry polls (changes come from ``registry``);
- ``replay``: a supervisee's period decided again from the stored fixes.
"""

from alerts.decide.stage import DecideStage

__all__ = ["DecideStage"]
