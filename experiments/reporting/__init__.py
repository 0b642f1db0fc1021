"""Figures (plots.py), the HTML report of experiments (report.py) and the metrics they report."""
