"""The fault-injection suite (make faults); see conftest.py, faultlib.py and inject.py."""
