"""The docker backend: containers, locally built images, the operator's compose stack, a TCP relay."""
