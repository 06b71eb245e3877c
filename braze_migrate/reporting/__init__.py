"""Reporting: how a finished run is shown to a person (the terminal summary). Reads RunSummary only."""
