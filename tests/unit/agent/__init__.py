"""Unit tests of the webserver agent (certfleet.agent) and the fleet summary."""
