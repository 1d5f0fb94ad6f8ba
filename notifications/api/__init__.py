"""The REST transport of the event log: ``api/events/`` (see ``feed``)."""
