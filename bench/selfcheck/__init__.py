"""The instrument's own checks: is the Python swarm fast enough to measure the servers?"""
