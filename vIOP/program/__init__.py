"""The program around the sessions (issue 16): tracks that recur, their occurrences, enrollments.

Pure domain, like :mod:`vIOP.rooms`: schedules are computed here (with ``icalendar`` and
``recurring-ical-events``), stores are ports (:mod:`vIOP.program.ports`) implemented in ``vIOP.storage``.
"""
