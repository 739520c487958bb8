"""Monitors of the data flowing in: what each batch's events say about their producers.

Pure: a monitor reads decoded events and answers with counts; the roles put them on
``/metrics`` (``app/input_quality.py``) and the Prometheus rules alert on them.
"""
