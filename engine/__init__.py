"""Sans-IO core of the gateway: pure functions and small classes.

Nothing here imports trio, sockets or clocks; the server layer feeds data in
and acts on the decisions that come out.
"""
