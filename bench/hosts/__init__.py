"""Runs across hosts: the server on one, the swarm on others, over execnet gateways."""
