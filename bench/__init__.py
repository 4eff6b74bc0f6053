"""certfleet's benchmark suite: `make bench` (python -m bench), on the test bed's real servers."""
