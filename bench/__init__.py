"""Load bench for booktime's live transports, against a Django-free baseline.

Run ``python -m bench --help``; see README, "Performance".
"""
