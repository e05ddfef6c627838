"""Scheduling: the schedule store in Redis, the fire loop any number of ``jobkit scheduler`` processes run, schedules
created at run time, and periodiq actors picked up as entries."""
