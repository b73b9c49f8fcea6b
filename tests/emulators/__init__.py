"""Local stand-ins for the outside world (tracking aggregators), served on 127.0.0.1 in a thread."""
