"""Prefect automations kept in the repository (`automations/*.yaml`) and the command that applies them:
`python -m automations --webhook-url URL` (or `--block TYPE/NAME`), see `automations/apply.py`."""
