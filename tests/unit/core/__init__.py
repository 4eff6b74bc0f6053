"""Unit tests of certfleet.core (a package, so helper imports are unambiguous)."""
