"""REST API views that belong to notifications (mounted under ``api/``)."""
