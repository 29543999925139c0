"""The job report: one self-contained HTML file, and a Chrome trace, from a job's database.

``model`` holds what a report shows, ``mapwise.store.reportrows`` reads it (read-only,
never blocking a live run), ``layout`` turns it into geometry (pure: bars, bins, series),
``svg`` and ``page`` draw it, ``trace`` writes the Chrome trace-event JSON.
"""
